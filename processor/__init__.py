"""sls-kafka-processor: SLS shard cursor ranges to Kafka, nothing lost, nothing re-sent."""

__version__ = "0.1.0"
