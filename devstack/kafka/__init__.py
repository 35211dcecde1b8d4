"""A real single-node Apache Kafka broker run from Maven Central jars, plus topic helpers."""

from devstack.kafka.broker import KafkaBroker, KafkaBrokerError, free_port
from devstack.kafka.jars import KafkaJarsError, fetch_jars, kafka_version
from devstack.kafka.topics import create_topics, wait_for_broker

__all__ = [
    "KafkaBroker",
    "KafkaBrokerError",
    "KafkaJarsError",
    "create_topics",
    "fetch_jars",
    "free_port",
    "kafka_version",
    "wait_for_broker",
]
