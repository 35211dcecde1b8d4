"""The Kafka side: the sinks (`producer` at-least-once, `transactional` exactly-once), per-page delivery tracking
(`tracking`), what Kafka's errors mean (`errors`) and librdkafka's log (`client_log`)."""
