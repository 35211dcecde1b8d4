"""Exactly-once Kafka sink: one transactional producer per shard, its records and checkpoint committed together."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from checkpoints.base import Checkpoint
from common.deadline import Deadline
from common.errors import CheckpointError, FatalSinkError, SinkError
from processor.kafka.errors import CONSEQUENCES, is_fatal
from processor.kafka.producer import UNREACHABLE_FAIL_SECONDS, KafkaSink
from processor.kafka.tracking import Undeliverable

log = logging.getLogger(__name__)

# Longest single wait inside a transactional call before checking for fatal errors again.
_TXN_CALL_SLICE_SECONDS = 1.0


class TransactionalKafkaSink(KafkaSink):
    """Exactly-once: each run's records and its checkpoint record are committed in Kafka transactions.

    `transactional.id` is stable per project/logstore/shard, so a retry's `init_transactions` fences a stuck
    earlier instance (its next commit fails) and aborts whatever it left open. Downstream consumers must read
    with isolation.level=read_committed.
    """

    def __init__(self, config: dict[str, Any], transactional_id: str, timeout_ms: int,
                 factory: Callable[[dict[str, Any]], Producer] = Producer) -> None:
        conf = {**config, "transactional.id": transactional_id, "transaction.timeout.ms": timeout_ms}
        # librdkafka refuses a message timeout longer than the transaction timeout.
        conf["message.timeout.ms"] = min(int(conf.get("message.timeout.ms", timeout_ms)), timeout_ms)
        super().__init__(conf, factory)
        self.transactional_id = transactional_id
        self._initialized = False
        self._in_transaction = False
        # What this producer last committed for its shard. While it keeps its producer id nobody else can have
        # committed since: a fencing instance makes this one's next commit fail, which drops it (and this).
        self.committed: Checkpoint | None = None

    def init(self, deadline: Deadline) -> None:
        if self._initialized and self._producer is not None:
            # The broker of a warm producer may be gone since; the checkpoint read that follows would wait for it
            # without saying why. A reachable cluster answers in milliseconds.
            self._confirm_reachable(self._producer, max(min(UNREACHABLE_FAIL_SECONDS, deadline.remaining()), 0.5))
            return
        self._call("init_transactions", deadline)
        self._initialized = True

    def begin(self) -> None:
        try:
            self.producer.begin_transaction()
        except KafkaException as exc:
            raise self._txn_error("begin", exc.args[0]) from exc
        self._in_transaction = True
        self._trackers = []
        self._topics = set()

    def delivery_error(self) -> SinkError | None:
        """The first delivery error of the last transaction that was not merely a consequence of its failing."""
        for tracker in self._trackers:
            if tracker.error is not None and tracker.error.code() not in CONSEQUENCES:
                return self._sink_error(tracker.error, tracker.error_topic)
        return None

    def refused_by_broker(self) -> list[Undeliverable]:
        """Records of the last transaction the broker refused with their batch (reports served so far)."""
        return [item for tracker in self._trackers for item in tracker.undeliverable if not item.alone]

    def produce_checkpoint(self, topic: str, key: bytes, value: bytes) -> None:
        """The checkpoint record of the open transaction (waits for queue room like any record)."""
        producer = self.producer
        while True:
            try:
                producer.produce(topic, value, key)
                return
            except BufferError:
                self._serve_reports(producer, 0.05)
            except KafkaException as exc:
                msg = f"cannot write the checkpoint record to topic {topic!r}: {exc.args[0].str()}"
                raise CheckpointError(msg) from exc

    def commit(self, deadline: Deadline) -> None:
        self._call("commit_transaction", deadline)
        self._in_transaction = False

    def abort(self, deadline: Deadline) -> None:
        """Abort the open transaction; if even that fails, drop the producer (the retry's init aborts it)."""
        if self._producer is None or not self._in_transaction:
            return
        # The transaction's topics are checked again before the retry produces: a topic that vanished may have
        # failed it as a transaction error (adding its partitions), which names no record's topic.
        self._suspect_topics.update(self._topics)
        try:
            self._producer.abort_transaction(max(deadline.remaining(), 1.0))
            self._in_transaction = False
            self._producer.poll(0)  # the aborted records' reports: a refusal among them explains the failure
        except KafkaException as exc:
            log.warning("abort of transaction %s failed (%s); the producer will be recreated",
                        self.transactional_id, exc.args[0].str())
            self._drop()

    def abandon(self) -> None:
        # Purging would not undo produced records; aborting the transaction does (see abort).
        pass

    def probe(self, refused: Sequence[Undeliverable], deadline: Deadline) -> list[Undeliverable]:
        # Sending records again outside the transaction would deliver them twice (the retry sends them too).
        if refused:
            raise self.refusal_error(refused)
        return []

    def refusal_error(self, refused: Sequence[Undeliverable]) -> FatalSinkError:
        """Why a transaction the broker refused records of (too large, with their batch) cannot succeed."""
        first = refused[0]
        topics = ", ".join(sorted({item.topic for item in refused}))
        return FatalSinkError(
            f"Kafka refused {len(refused)} record(s) of transaction {self.transactional_id} for topic {topics} "
            f"({KafkaError(first.code).name()}: {first.reason}, e.g. the record from SLS cursor "
            f"{first.where.cursor} group {first.where.group}); the broker refuses whole batches, so every retry "
            "would fail the same way. Keep the producer's message.max.bytes (KAFKA_PRODUCER_CONFIG) at or below "
            "the topic's max.message.bytes: the client then refuses an oversized record alone, and it is "
            "dead-lettered inside the transaction")

    def _call(self, op: str, deadline: Deadline) -> None:
        """Run a blocking transactional call in slices, so that a fatal error seen meanwhile ends the wait.

        librdkafka reports a failed authentication only to `error_cb`, which runs from `poll()`: one
        `init_transactions(budget)` would block for the whole budget on a wrong password and then fail with a
        timeout. A call that timed out resumes where it was when called again.
        """
        while True:
            self.producer.poll(0)
            if self._fatal is not None:
                fatal = self._fatal
                self._drop()  # the retry builds a new producer, which authenticates afresh
                msg = f"Kafka producer cannot go on: {fatal}"
                raise FatalSinkError(msg)
            self._check_reachable(self.producer)
            try:
                getattr(self.producer, op)(max(min(deadline.remaining(), _TXN_CALL_SLICE_SECONDS), 0.5))
                return
            except KafkaException as exc:
                err = exc.args[0]
                if err.retriable() and not deadline.expired():
                    if err.code() != KafkaError._TIMED_OUT:  # a slice ending is not worth a warning
                        log.warning("%s of %s: %s; retrying", op, self.transactional_id, err.str())
                    continue
                raise self._txn_error(op, err) from exc

    def _sink_error(self, err: KafkaError, topic: str | None = None) -> SinkError:
        error = super()._sink_error(err, topic)
        if not isinstance(error, FatalSinkError):
            return error
        # A fenced producer can neither flush nor abort; the retry's new one aborts what this one left open.
        self._drop()
        return FatalSinkError(f"producing in transaction {self.transactional_id} failed for good ({err.name()}: "
                              f"{err.str()}); another instance may own this shard now (fenced)", err.code())

    def _txn_error(self, op: str, err: KafkaError) -> SinkError:
        """Fatal (fenced, authentication): the producer is dropped. Otherwise the transaction is abortable
        (`txn_requires_abort`) or the call failed on its own: either way the run aborts and reads again."""
        if is_fatal(err):
            self._drop()
            return FatalSinkError(f"{op} of transaction {self.transactional_id} failed for good ({err.name()}: "
                                  f"{err.str()}); another instance may own this shard now (fenced)", err.code())
        what = "must be aborted" if err.txn_requires_abort() else "failed"
        text = f"{op} of transaction {self.transactional_id} {what}: {err.name()}: {err.str()}"
        if self._outage() is not None:
            text += f"; {self._unreachable_text()}"
        return SinkError(text, err.code())

    def _drop(self) -> None:
        self._producer = None
        self._initialized = False
        self._in_transaction = False
        self.committed = None
