"""Local dev and test infrastructure: a real Kafka broker, the SLS emulator and the `dev` stack."""
