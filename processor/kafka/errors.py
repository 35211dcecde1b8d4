"""What Kafka's errors mean for a run: fatal for the producer, a missing topic, or a consequence of another."""

from __future__ import annotations

from confluent_kafka import KafkaError

# Producer-wide errors that no amount of waiting fixes.
FATAL_CODES = frozenset({
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError._SSL,
    # What produce() raises once the producer is in a fatal state (its first error gave the cause).
    KafkaError._FATAL,
})
# A topic the broker does not know.
TOPIC_MISSING = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})
# Delivery errors a failed transaction gives its other records: they say nothing of why it failed.
CONSEQUENCES = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT, KafkaError._STATE,
                           KafkaError._INCONSISTENT})


def is_fatal(err: KafkaError) -> bool:
    """The one decision: the producer cannot go on after `err` (it must be dropped and built anew)."""
    return err.fatal() or err.code() in FATAL_CODES


def missing_topic(what: str, name: str, variable: str, bootstrap: str) -> str:
    return (f"the {what} {name!r} ({variable}) does not exist at {bootstrap}: create it, e.g. "
            f"kafka-topics.sh --bootstrap-server {bootstrap} --create --topic {name}, or set {variable} to one "
            "that exists")

