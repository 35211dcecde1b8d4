"""The sink of a dry run: each record's value printed as a JSON line, the checks of a real run applied.

A record the producer would refuse as larger than `message.max.bytes` is handed back as Kafka would, so the
loop dead-letters it exactly as a real run does; dead letters are logged with their reason, not printed.
A reader that goes away (`| head`) ends the run: `OutputClosedError`, which nothing retries.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, BinaryIO

import orjson
from confluent_kafka import KafkaError

from common.deadline import Deadline
from common.errors import ProcessorError
from processor.dead_letter import Provenance
from processor.kafka.tracking import DeliveryTracker, Undeliverable

log = logging.getLogger(__name__)

# librdkafka's default `message.max.bytes`.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000


class OutputClosedError(ProcessorError):
    """The dry run's output was closed by its reader: what it asked for is printed, the run is over."""


class PrintingSink:
    """A `Sink` that writes to `out` (under `lock`, shared with other processes) and confirms at once."""

    def __init__(self, out: BinaryIO, lock: Any, dlq_topic: str, max_message_bytes: int) -> None:
        self.out = out
        self.lock = lock
        self.dlq_topic = dlq_topic
        self.max_message_bytes = max_message_bytes

    def set_deadline(self, deadline: Deadline) -> None:
        """Nothing waits here."""

    def poll(self) -> None:
        """Nothing to serve: every record is confirmed as it is produced."""

    def ensure_topics(self, topic: str, dlq_topic: str, deadline: Deadline) -> None:
        """A dry run needs no topic."""

    def produce(self, topic: str, key: bytes | None, value: bytes, where: Provenance,
                tracker: DeliveryTracker) -> None:
        self.produce_all(topic, [(key, value)], where, tracker)

    def produce_all(self, topic: str, records: Sequence[tuple[bytes | None, bytes]], where: Provenance,
                    tracker: DeliveryTracker) -> int:
        lines, size = [], 0
        for key, value in records:
            if len(value) > self.max_message_bytes:
                err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, f"Message size too large ({len(value)} bytes)")
                tracker.undeliverable.append(Undeliverable(topic, key, value, where, err, alone=True))
            elif topic == self.dlq_topic:
                log.warning("shard %d cursor %s: would be dead-lettered: %s", where.shard, where.cursor,
                            orjson.loads(value).get("reason"))
            else:
                lines.append(value)
                size += len(value)
        if lines:
            with self.lock:
                try:
                    self.out.write(b"".join(line + b"\n" for line in lines))
                    self.out.flush()
                except BrokenPipeError:
                    # What is still buffered would fail again at every later flush, the one at exit included.
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, self.out.fileno())
                    os.close(devnull)
                    raise OutputClosedError("the output was closed by its reader") from None
        return size

    def probe(self, refused: Sequence[Undeliverable], deadline: Deadline) -> list[Undeliverable]:
        return list(refused)

    def wait(self, tracker: DeliveryTracker, deadline: Deadline) -> None:
        """Confirmed already."""

    def abandon(self) -> None:
        """Nothing is queued."""
