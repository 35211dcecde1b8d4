"""Helpers for tests that talk to the Kafka broker: reading a topic back, and an external-broker stand-in."""

from __future__ import annotations

import time
import uuid
from typing import NamedTuple, Protocol

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

_BATCH = 10_000


class KafkaUnderTest(Protocol):
    """What the ``kafka`` fixture returns: a broker started by the suite or an external one."""

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` of the PLAINTEXT listener."""
        ...

    def start(self, timeout: float = 90.0) -> None:
        """Start it again after ``stop``/``kill``."""

    def stop(self, grace: float = 20.0) -> None:
        """Clean shutdown."""

    def kill(self) -> None:
        """SIGKILL, as a crash would."""

    def restart(self, timeout: float = 90.0) -> None:
        """Stop cleanly and start again, keeping the data."""


class ExternalKafka:
    """A broker given by ``SLS_KAFKA_TEST_BOOTSTRAP``: usable, but not ours to stop, kill or restart."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def _refuse(self, what: str) -> None:
        pytest.fail(
            f"this test has to {what} the Kafka broker, which is impossible with the external broker "
            f"SLS_KAFKA_TEST_BOOTSTRAP={self.bootstrap}; unset it so that the suite starts its own broker"
        )

    def start(self, timeout: float = 90.0) -> None:
        """Fail the test: the external broker is not ours."""
        self._refuse("start")

    def stop(self, grace: float = 20.0) -> None:
        """Fail the test: the external broker is not ours."""
        self._refuse("stop")

    def kill(self) -> None:
        """Fail the test: the external broker is not ours."""
        self._refuse("kill")

    def restart(self, timeout: float = 90.0) -> None:
        """Fail the test: the external broker is not ours."""
        self._refuse("restart")


class Record(NamedTuple):
    """One record as read back from Kafka (a tuple: a million of them build fast)."""

    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]
    partition: int
    offset: int


def read_all(
    bootstrap: str,
    topic: str,
    isolation: str = "read_committed",
    idle: float = 1.0,
    timeout: float = 30.0,
) -> list[Record]:
    """Read every partition of ``topic`` from the beginning, in partition then offset order.

    Returns once every partition has reached its end (for read_committed: the last stable offset, so
    aborted and open transactions are left out) and nothing new arrived for ``idle`` seconds. Raises
    ``TimeoutError`` after ``timeout`` seconds. Offsets are not counts: transaction markers use offsets.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-all-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
            # Bigger fetches: reading a million records back is dominated by round trips otherwise.
            "max.partition.fetch.bytes": 8 << 20,
            "fetch.wait.max.ms": 50,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        meta = metadata.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            msg = f"cannot read topic {topic!r} at {bootstrap}: {meta.error if meta else 'not found'}"
            raise RuntimeError(msg)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        return _drain(consumer, set(meta.partitions), topic, idle, timeout)
    finally:
        consumer.close()


def _drain(consumer: Consumer, partitions: set[int], topic: str, idle: float, timeout: float) -> list[Record]:
    # One list per partition: each arrives in offset order, so no sort of a million records is needed.
    by_partition: dict[int, list[Record]] = {p: [] for p in partitions}
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    last_record = time.monotonic()
    while at_end != partitions or time.monotonic() - last_record < idle:
        if time.monotonic() > deadline:
            total = sum(map(len, by_partition.values()))
            msg = (
                f"reading {topic!r} took over {timeout:.0f}s ({total} records so far, "
                f"partitions at their end: {sorted(at_end)} of {sorted(partitions)})"
            )
            raise TimeoutError(msg)
        got_records = False
        for message in consumer.consume(num_messages=_BATCH, timeout=0.2):
            error = message.error()
            if error is None:
                partition = message.partition()
                headers = message.headers()
                by_partition[partition].append(
                    Record(
                        message.key(), message.value(), dict(headers) if headers else {}, partition, message.offset()
                    )
                )
                at_end.discard(partition)
                got_records = True
            elif error.code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
            else:
                raise KafkaException(error)
        if got_records:
            last_record = time.monotonic()
    return [record for p in sorted(by_partition) for record in by_partition[p]]
