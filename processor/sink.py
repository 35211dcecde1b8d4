"""Kafka sink: batched produce with one delivery tracker per batch, confirmed before a cursor is saved.

Guarantee: at-least-once. The producer is idempotent (acks=all), so librdkafka's own retries never duplicate
or reorder; a record is counted delivered only when its delivery report says so, and the first delivery error
of a batch is raised when the batch is settled. Records the broker rejects for good (too large, invalid) are
handed back so the pipeline can dead-letter them with the broker's reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from processor.deadline import Deadline
from processor.errors import BudgetExceededError, FatalSinkError, SinkError

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes | str]]

# The broker will never accept these records; retrying the batch would fail forever.
UNDELIVERABLE = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_MSG_SIZE,
})

# Producer-wide errors that no amount of waiting fixes.
_FATAL_GLOBAL = frozenset({
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError._SSL,
    # What produce() raises once the producer is in a fatal state (its first error gave the cause).
    KafkaError._FATAL,
})


# Records queued in librdkafka (unsent, unconfirmed or with a report not yet served) before `produce_all` waits:
# each costs ~0.7 KB there (copies of key, value and the provenance headers), so ~40 MB at most, whatever size
# the pulled pages turn out to be. Plenty in flight at ~200k records/s and acks within tens of ms.
MAX_QUEUED = 60_000


class Undeliverable:
    """A record the broker refused for good, with the reason."""

    __slots__ = ("headers", "key", "reason", "topic", "value")

    def __init__(self, topic: str, key: bytes | None, value: bytes, headers: Any, reason: str) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
        self.reason = reason


class DeliveryTracker:
    """Counts one batch's outstanding deliveries; its bound `on_delivery` is the single callback for all."""

    __slots__ = ("delivered", "error", "pending", "undeliverable")

    def __init__(self) -> None:
        self.pending = 0
        self.delivered = 0
        self.error: KafkaError | None = None
        self.undeliverable: list[Undeliverable] = []

    def on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        self.pending -= 1
        if err is None:
            self.delivered += 1
        elif err.code() in UNDELIVERABLE:
            self.undeliverable.append(Undeliverable(msg.topic(), msg.key(), msg.value(), msg.headers(), err.str()))
        elif self.error is None:
            self.error = err

    @property
    def done(self) -> bool:
        return self.pending == 0


class Sink(Protocol):
    """What a pipeline needs of Kafka: produce with per-batch tracking, wait for a batch, drop on failure."""

    def set_deadline(self, deadline: Deadline) -> None: ...
    def poll(self) -> None: ...
    def produce(self, topic: str, key: bytes | None, value: bytes, headers: Headers,
                tracker: DeliveryTracker) -> None: ...
    def produce_all(self, topic: str, records: Sequence[tuple[bytes | None, bytes]], headers: Headers,
                    tracker: DeliveryTracker) -> int: ...
    def wait(self, tracker: DeliveryTracker, deadline: Deadline) -> None: ...
    def abandon(self) -> None: ...


class KafkaSink:
    """At-least-once Kafka sink over one long-lived idempotent producer (created lazily, reused per instance)."""

    def __init__(self, config: dict[str, Any], factory: Callable[[dict[str, Any]], Producer] = Producer) -> None:
        self._config = {**config, "error_cb": self._on_error}
        self._factory = factory
        self._producer: Producer | None = None
        self._fatal: str | None = None
        self._deadline: Deadline | None = None

    def set_deadline(self, deadline: Deadline) -> None:
        """The invocation's budget, which also bounds the waits for queue room inside `produce`."""
        self._deadline = deadline

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._fatal = None
            self._producer = self._factory(self._config)
        return self._producer

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal() or err.code() in _FATAL_GLOBAL:
            self._fatal = f"{err.name()}: {err.str()}"
        else:
            log.warning("Kafka client: %s", err.str())

    def produce(self, topic: str, key: bytes | None, value: bytes, headers: Headers,
                tracker: DeliveryTracker) -> None:
        producer = self.producer
        while True:
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=tracker.on_delivery)
            except BufferError:
                # Local queue full: serve delivery reports to make room, then try again.
                self._serve_reports(producer, 0.05)
                continue
            except KafkaException as exc:
                self._refused(exc, topic, key, value, headers, tracker)
                return
            tracker.pending += 1
            return

    def _refused(self, exc: KafkaException, topic: str, key: bytes | None, value: bytes, headers: Headers,
                 tracker: DeliveryTracker) -> None:
        """A record `produce` would not take: hand it back if the broker never would, else raise."""
        err = exc.args[0]
        if err.code() in UNDELIVERABLE:
            tracker.undeliverable.append(Undeliverable(topic, key, value, headers, err.str()))
            return
        raise self._sink_error(err) from exc

    def produce_all(self, topic: str, records: Sequence[tuple[bytes | None, bytes]], headers: Headers,
                    tracker: DeliveryTracker) -> int:
        """`produce` every (key, value) of `records` in order; returns the bytes of the values.

        The hot loop calls the C producer directly; a record it does not take at once is handled as `produce`
        does: a full queue is waited out, a refusal handed back or raised (from the first exception: producing
        again after a fatal error only yields a generic _FATAL). `pending` is counted up front: delivery reports
        are only served by `poll`, so none can arrive for these records before they are counted.
        """
        producer = self.producer
        if len(producer) > MAX_QUEUED:
            self._make_room(producer)
        produce, on_delivery = producer.produce, tracker.on_delivery
        tracker.pending += len(records)
        size = 0
        for key, value in records:
            size += len(value)
            try:
                # Positional (topic, value, key, partition, callback, on_delivery, timestamp, headers): keyword
                # parsing costs ~0.3 us a call, a fifth of the call. -1 is "any partition" and 0 "now".
                produce(topic, value, key, -1, on_delivery, None, 0, headers)
            except BufferError:
                tracker.pending -= 1
                self.produce(topic, key, value, headers, tracker)
            except KafkaException as exc:
                tracker.pending -= 1
                self._refused(exc, topic, key, value, headers, tracker)
        return size

    def _make_room(self, producer: Producer) -> None:
        """Serve delivery reports until the queue is down to half of MAX_QUEUED.

        Records that cannot be delivered leave the queue too, failed, once `message.timeout.ms` passes.
        """
        while len(producer) > MAX_QUEUED // 2:
            self._serve_reports(producer, 0.01)

    def _serve_reports(self, producer: Producer, seconds: float) -> None:
        self._raise_if_fatal()
        if self._deadline is not None and self._deadline.expired():
            # Kafka is not taking records (down, or slower than the budget): fail now, not when FC kills us.
            msg = f"time budget spent waiting for room in the producer queue ({len(producer)} record(s) queued)"
            raise BudgetExceededError(msg)
        producer.poll(seconds)

    def poll(self) -> None:
        self.producer.poll(0)

    def wait(self, tracker: DeliveryTracker, deadline: Deadline) -> None:
        """Serve delivery reports until `tracker` settles; raise on its first error or when the budget is spent."""
        producer = self.producer
        while not tracker.done:
            self._raise_if_fatal()
            if deadline.expired():
                msg = f"time budget spent with {tracker.pending} record(s) still unconfirmed by Kafka"
                raise BudgetExceededError(msg)
            producer.poll(min(0.1, deadline.remaining()))
        if tracker.error is not None:
            raise self._sink_error(tracker.error)

    def abandon(self) -> None:
        """Drop everything queued or in flight after a failure, so the next invocation starts clean.

        The dropped records belong to batches whose cursor was not saved: the retry sends them again.
        """
        if self._producer is None:
            return
        try:
            self._producer.purge(in_queue=True, in_flight=True, blocking=True)
            self._producer.poll(0)
        except KafkaException as exc:
            log.warning("purging the producer failed: %s; it will be recreated", exc)
            self._producer = None
        if self._fatal is not None:
            self._producer = None

    def close(self, timeout: float = 10.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)
            self._producer = None

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            msg = f"Kafka producer cannot go on: {self._fatal}"
            raise FatalSinkError(msg)

    def _sink_error(self, err: KafkaError) -> SinkError:
        if err.fatal() or err.code() in _FATAL_GLOBAL:
            self._fatal = f"{err.name()}: {err.str()}"
            return FatalSinkError(f"Kafka producer cannot go on: {self._fatal}")
        return SinkError(f"Kafka did not confirm a record: {err.name()}: {err.str()}")


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

    def init(self, deadline: Deadline) -> None:
        if self._initialized and self._producer is not None:
            return
        self._call("init_transactions", deadline)
        self._initialized = True

    def begin(self) -> None:
        try:
            self.producer.begin_transaction()
        except KafkaException as exc:
            raise self._txn_error("begin", exc.args[0]) from exc
        self._in_transaction = True

    def commit(self, deadline: Deadline) -> None:
        self._call("commit_transaction", deadline)
        self._in_transaction = False

    def abort(self, deadline: Deadline) -> None:
        """Abort the open transaction; if even that fails, drop the producer (the retry's init aborts it)."""
        if self._producer is None or not self._in_transaction:
            return
        try:
            self._producer.abort_transaction(max(deadline.remaining(), 1.0))
            self._in_transaction = False
        except KafkaException as exc:
            log.warning("abort of transaction %s failed (%s); the producer will be recreated",
                        self.transactional_id, exc.args[0].str())
            self._drop()

    def abandon(self) -> None:
        # Purging would not undo produced records; aborting the transaction does (see abort).
        pass

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

    def _sink_error(self, err: KafkaError) -> SinkError:
        error = super()._sink_error(err)
        if not isinstance(error, FatalSinkError):
            return error
        # A fenced producer can neither flush nor abort; the retry's new one aborts what this one left open.
        self._drop()
        return FatalSinkError(f"producing in transaction {self.transactional_id} failed for good ({err.name()}: "
                              f"{err.str()}); another instance may own this shard now (fenced)")

    def _txn_error(self, op: str, err: KafkaError) -> SinkError:
        if err.fatal() or err.code() in _FATAL_GLOBAL:
            self._drop()
            return FatalSinkError(f"{op} of transaction {self.transactional_id} failed for good ({err.name()}: "
                                  f"{err.str()}); another instance may own this shard now (fenced)")
        return SinkError(f"{op} of transaction {self.transactional_id} failed: {err.name()}: {err.str()}")

    def _drop(self) -> None:
        self._producer = None
        self._initialized = False
        self._in_transaction = False
