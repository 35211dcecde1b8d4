"""sls-kafka-processor: SLS shard cursor ranges to Kafka, nothing lost; exactly once on request."""

__version__ = "0.1.0"
