"""`sls-kafka dlq replay`: each dead letter's original projected again with the current configuration.

Progress is the offsets of a Kafka consumer group on the dead-letter topic. They move only after a batch's
records are confirmed: at-least-once, committed once the idempotent producer's delivery reports all came back
(a replay killed in between re-sends that one batch); exactly-once, sent to the batch's transaction with
`send_offsets_to_transaction`, so the records and the progress become visible together or not at all.
A dead letter that fails again is dead-lettered anew (its new reason, `replay_of` naming the old record); the
old record stays in the topic, as Kafka keeps it, behind the group's offset.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from common.errors import SinkError
from processor.commands.dlq_records import DeadLetter, consumer_config, original_group, partitions_of, read_to_end
from processor.config import Settings
from processor.kafka.tracking import UNDELIVERABLE
from processor.projection import Projector

log = logging.getLogger(__name__)

DEFAULT_BATCH = 500
CONFIRM_SECONDS = 60.0


@dataclass
class ReplayTotals:
    topic: str
    read: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    other_topic: int = 0
    not_replayable: int = 0

    def line(self) -> str:
        return (f"sls-kafka dlq replay: {self.read} dead letter(s) read: {self.delivered} delivered to "
                f"{self.topic}, {self.dead_lettered} dead-lettered again, {self.other_topic} for another topic "
                f"(left to its replay), {self.not_replayable} cannot be replayed (original cut or not a dead letter)")


class ReplayWriter:
    """Produces one batch's records and, once they are confirmed, moves the group's offsets past the batch."""

    def __init__(self, settings: Settings, consumer: Consumer) -> None:
        kafka = settings.kafka
        self.topic, self.dlq = kafka.topic, kafka.dlq_topic
        self.consumer = consumer
        self.transactional = kafka.delivery_mode == "exactly-once"
        conf = kafka.producer_config()
        if self.transactional:
            # Stable per target topic: a replay run again fences one still running and aborts what it left open.
            conf.update({"transactional.id": f"sls-kafka/dlq-replay/{self.topic}",
                         "transaction.timeout.ms": kafka.transaction_timeout_ms})
        self.producer = Producer(conf)
        self._in_transaction = False
        # (error, the dead letter the record came from, the topic it was for)
        self._errors: list[tuple[KafkaError, DeadLetter, str]] = []
        self.dead_lettered = 0
        if self.transactional:
            self._call(lambda: self.producer.init_transactions(CONFIRM_SECONDS))

    def deliver(self, letter: DeadLetter, key: bytes | None, value: bytes) -> None:
        self._produce(self.topic, key, value, letter)

    def dead_letter(self, letter: DeadLetter, reason: str) -> None:
        doc = {**letter.doc, "reason": reason, "rejected_at": time.time(),
               "replay_of": {"topic": self.dlq, "partition": letter.partition, "offset": letter.offset,
                             "reason": letter.reason}}
        self._produce(self.dlq, letter.key, orjson.dumps(doc), letter)
        self.dead_lettered += 1

    def _produce(self, topic: str, key: bytes | None, value: bytes, letter: DeadLetter) -> None:
        if self.transactional and not self._in_transaction:
            self._call(self.producer.begin_transaction)
            self._in_transaction = True
        try:
            self.producer.produce(topic, value, key, headers=letter.headers,
                                  on_delivery=partial(self._report, letter))
        except BufferError:
            self.producer.poll(0.1)
            self._produce(topic, key, value, letter)
        except KafkaException as exc:
            self._refused(exc.args[0], topic, letter)

    def _report(self, letter: DeadLetter, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._errors.append((err, letter, msg.topic()))

    def _refused(self, err: KafkaError, topic: str, letter: DeadLetter) -> None:
        """A record Kafka will never take goes back to the dead-letter topic with Kafka's reason; else raise."""
        if topic == self.dlq or err.code() not in UNDELIVERABLE:
            msg = f"producing to {topic!r} failed: {err.str()}; the replay's progress was not moved"
            raise SinkError(msg)
        self.dead_letter(letter, f"Kafka refused the record for topic {topic}: {err.str()}")

    def confirm(self, last: dict[int, int]) -> None:
        """Wait for every record of the batch, then move the offsets past `last` (partition: last offset read)."""
        offsets = [TopicPartition(self.dlq, p, o + 1) for p, o in sorted(last.items())]
        if self.transactional:
            if not self._in_transaction:
                self._call(self.producer.begin_transaction)
                self._in_transaction = True
            metadata = self.consumer.consumer_group_metadata()
            self._call(lambda: self.producer.send_offsets_to_transaction(offsets, metadata, CONFIRM_SECONDS))
            self._call(lambda: self.producer.commit_transaction(CONFIRM_SECONDS))
            self._in_transaction = False
            return
        self._flush()
        if self._errors:
            failed, self._errors = self._errors, []
            for err, letter, topic in failed:
                self._refused(err, topic, letter)
            self._flush()
            if self._errors:
                err, _, _ = self._errors[0]
                msg = f"producing to the dead-letter topic failed: {err.str()}; the replay's progress was not moved"
                raise SinkError(msg)
        self.consumer.commit(offsets=offsets, asynchronous=False)

    def _flush(self) -> None:
        if self.producer.flush(CONFIRM_SECONDS) > 0:
            msg = f"Kafka did not confirm the replayed records within {CONFIRM_SECONDS:.0f}s; progress not moved"
            raise SinkError(msg)

    def _call(self, op: Callable[[], Any]) -> None:
        """A transactional call; a failure aborts the transaction (nothing of the batch, its progress included)."""
        try:
            op()
        except KafkaException as exc:
            if self._in_transaction:
                self._abort()
            msg = f"the replay's transaction failed: {exc.args[0].str()}; its records and progress were discarded"
            raise SinkError(msg) from None
        if self._errors:
            err, _, _ = self._errors[0]
            self._abort()
            msg = f"a replayed record was refused ({err.str()}); the transaction was aborted, progress not moved"
            raise SinkError(msg)

    def _abort(self) -> None:
        self._errors = []
        self._in_transaction = False
        # A fenced or failed producer's transaction is aborted by the broker (fencing or its timeout).
        with contextlib.suppress(KafkaException):
            self.producer.abort_transaction(CONFIRM_SECONDS)

    def close(self) -> None:
        if self._in_transaction:
            self._abort()
        self.producer.flush(CONFIRM_SECONDS)


def replay_one(letter: DeadLetter, projector: Projector, writer: ReplayWriter, totals: ReplayTotals) -> None:
    doc = letter.doc
    if letter.target_topic not in (None, totals.topic):
        totals.other_topic += 1
    elif isinstance(doc.get("original"), dict):
        try:
            good, bad = projector.project_group(original_group(doc["original"]))
        except ValueError as exc:
            _not_replayable(letter, str(exc), totals)
            return
        for key, value in good:
            writer.deliver(letter, key, value)
            totals.delivered += 1
        for rejected in bad:
            writer.dead_letter(letter, rejected.reason)
    elif isinstance(doc.get("original_text"), str) and "original_truncated" not in doc \
            and letter.reason.startswith("Kafka refused"):
        # The projected record itself, refused for its size: Kafka may take it now (a raised max.message.bytes).
        writer.deliver(letter, letter.key, doc["original_text"].encode())
        totals.delivered += 1
    else:
        _not_replayable(letter, "its original was cut to fit the record" if "original_truncated" in doc
                        else "it holds no original log", totals)


def _not_replayable(letter: DeadLetter, why: str, totals: ReplayTotals) -> None:
    """Counted and named: it stays where it is in the dead-letter topic, for `dlq show` and a person."""
    totals.not_replayable += 1
    log.warning("dead letter at partition %d offset %d cannot be replayed: %s", letter.partition, letter.offset, why)


def replay(settings: Settings, group: str | None, batch: int, limit: int | None,
           stop: threading.Event) -> ReplayTotals:
    kafka = settings.kafka
    totals = ReplayTotals(kafka.topic)
    consumer = Consumer(consumer_config(kafka, group or f"sls-kafka-dlq-replay-{kafka.topic}"))
    writer: ReplayWriter | None = None
    try:
        partitions = partitions_of(consumer, kafka.dlq_topic, "dead-letter topic")
        # First: exactly-once, its init_transactions aborts what a killed replay left open, whose offsets would
        # keep the group's committed ones unstable (unreadable) until that transaction timed out.
        writer = ReplayWriter(settings, consumer)
        committed = consumer.committed([TopicPartition(kafka.dlq_topic, p) for p in partitions], timeout=10)
        starts = {tp.partition: tp.offset if tp.offset >= 0 else OFFSET_BEGINNING for tp in committed}
        projector = Projector(settings.projection)
        last: dict[int, int] = {}
        for letter in read_to_end(consumer, kafka.dlq_topic, starts):
            replay_one(letter, projector, writer, totals)
            totals.read += 1
            last[letter.partition] = letter.offset
            done = stop.is_set() or (limit is not None and totals.read >= limit)
            if done or totals.read % batch == 0:
                writer.confirm(last)
                last = {}
            if done:
                break
        if last:
            writer.confirm(last)
    finally:
        if writer is not None:
            totals.dead_lettered = writer.dead_lettered
            writer.close()
        consumer.close()
    return totals
