"""Per-page delivery tracking and the `Sink` protocol the delivery loop produces through.

A record is counted delivered only when its delivery report says so. Records Kafka refuses for good (too large,
invalid) are handed back with their provenance, kept on our side (delivery reports carry no headers), so the
loop can dead-letter them with the broker's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError

from common.deadline import Deadline
from processor.dead_letter import Provenance

# The broker will never accept these records; retrying the batch would fail forever.
UNDELIVERABLE = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_MSG_SIZE,
})



# Records queued in librdkafka (unsent, unconfirmed or with a report not yet served) before `produce_all` waits:
# each costs ~0.7 KB there (copies of key, value and the provenance headers), so ~40 MB at most, whatever size
# the pulled pages turn out to be. Plenty in flight at ~200k records/s and acks within tens of ms.
MAX_QUEUED = 60_000


class Undeliverable:
    """A record Kafka refused for good: the reason, and where it came from.

    `alone` tells whether the refusal was about this record on its own: the client's size check, or a broker
    request holding nothing else. A broker refusal of a batch of records says nothing about each of them.
    """

    __slots__ = ("alone", "code", "key", "reason", "topic", "value", "where")

    def __init__(self, topic: str, key: bytes | None, value: bytes, where: Provenance, err: KafkaError,
                 alone: bool) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self.where = where
        self.code = err.code()
        self.reason = err.str()
        self.alone = alone


class DeliveryTracker:
    """Counts one batch's outstanding deliveries; `report`, bound to each record's provenance, is the callback."""

    __slots__ = ("alone", "delivered", "error", "error_topic", "pending", "undeliverable")

    def __init__(self, alone: bool = False) -> None:
        self.pending = 0
        self.delivered = 0
        self.error: KafkaError | None = None
        self.error_topic: str | None = None
        self.undeliverable: list[Undeliverable] = []
        # Whether each record was sent in a request of its own (see `KafkaSink.probe`).
        self.alone = alone

    def report(self, where: Provenance, err: KafkaError | None, msg: Any) -> None:
        self.pending -= 1
        if err is None:
            self.delivered += 1
        elif err.code() in UNDELIVERABLE:
            self.undeliverable.append(Undeliverable(msg.topic(), msg.key(), msg.value(), where, err, self.alone))
        elif self.error is None:
            self.error, self.error_topic = err, msg.topic()

    @property
    def done(self) -> bool:
        return self.pending == 0


class Sink(Protocol):
    """What a pipeline needs of Kafka: produce with per-batch tracking, wait for a batch, drop on failure."""

    def set_deadline(self, deadline: Deadline) -> None: ...
    def poll(self) -> None: ...
    def produce(self, topic: str, key: bytes | None, value: bytes, where: Provenance,
                tracker: DeliveryTracker) -> None: ...
    def produce_all(self, topic: str, records: Sequence[tuple[bytes | None, bytes]], where: Provenance,
                    tracker: DeliveryTracker) -> int: ...
    def probe(self, refused: Sequence[Undeliverable], deadline: Deadline) -> list[Undeliverable]: ...
    def ensure_topics(self, topic: str, dlq_topic: str, deadline: Deadline) -> None: ...
    def wait(self, tracker: DeliveryTracker, deadline: Deadline) -> None: ...
    def abandon(self) -> None: ...
