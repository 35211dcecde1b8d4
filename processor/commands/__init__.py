"""One module per `sls-kafka` command."""
