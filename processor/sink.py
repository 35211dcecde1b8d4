"""Kafka sink: batched produce with one delivery tracker per batch, confirmed before a cursor is saved.

Guarantee: at-least-once. The producer is idempotent (acks=all), so librdkafka's own retries never duplicate
or reorder; a record is counted delivered only when its delivery report says so, and the first delivery error
of a batch is raised when the batch is settled. Records Kafka rejects for good (too large, invalid) are handed
back with their provenance, kept on our side (delivery reports carry no headers), so the pipeline can dead-letter
them with the broker's reason. The broker refuses a whole producer batch for one bad record, so `probe` sends
such records again one per request to tell the guilty ones from those that only shared their batch.

A Kafka nobody can reach is reported as one "cannot reach Kafka at <bootstrap servers>" line at a bounded rate,
and fails the invocation once it has lasted UNREACHABLE_FAIL_SECONDS; librdkafka's own log goes through Python
logging. The topics are checked to exist before anything is produced to them.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from checkpoints.base import Checkpoint
from processor.dead_letter import Provenance
from processor.deadline import Deadline
from processor.errors import BudgetExceededError, CheckpointError, ConfigError, FatalSinkError, SinkError

log = logging.getLogger(__name__)

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


# Errors that mean no broker answers (refused, unresolvable, all connections down).
_UNREACHABLE = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE})
# The "cannot reach Kafka" line is logged at most this often; librdkafka repeats the cause several times a second.
UNREACHABLE_LOG_SECONDS = 10.0
# No broker answering for this long fails the invocation (the trigger retries), once a metadata request confirms it.
UNREACHABLE_FAIL_SECONDS = 10.0
_CONFIRM_SECONDS = 2.0
# No connection error for this long ends an outage: reconnects are tried every 10 s at most (reconnect.backoff.max.ms,
# with jitter).
_OUTAGE_QUIET_SECONDS = 20.0
_METADATA_SLICE_SECONDS = 0.2
# A metadata request answers in milliseconds from a reachable cluster.
TOPIC_CHECK_SECONDS = 5.0
_TOPIC_MISSING = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})


_ELAPSED = re.compile(r"after \d+ms")


class _OncePerInterval(logging.Filter):
    """Lets each distinct librdkafka line through once a minute: a failing connection repeats it every retry."""

    INTERVAL = 60.0
    MAX_KEPT = 1000

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # confluent-kafka logs (facility, client name, text); the text names the broker and the cause, and how
        # long the attempt took, which differs at every retry.
        text = str(record.args[2]) if isinstance(record.args, tuple) and len(record.args) == 3 else str(record.msg)
        key = _ELAPSED.sub("", text)
        now = time.monotonic()
        if now - self._last.get(key, -self.INTERVAL) < self.INTERVAL:
            return False
        if len(self._last) >= self.MAX_KEPT:
            self._last.clear()
        self._last[key] = now
        return True


# librdkafka's log (the `logger` setting), instead of its raw lines on stderr.
librdkafka_log = logging.getLogger("processor.librdkafka")
librdkafka_log.addFilter(_OncePerInterval())


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


class KafkaSink:
    """At-least-once Kafka sink over one long-lived idempotent producer (created lazily, reused per instance)."""

    def __init__(self, config: dict[str, Any], factory: Callable[[dict[str, Any]], Producer] = Producer) -> None:
        self._config = {**config, "error_cb": self._on_error, "logger": librdkafka_log}
        self.bootstrap = str(config.get("bootstrap.servers", ""))
        self._factory = factory
        self._producer: Producer | None = None
        self._prober: Producer | None = None
        self._fatal: str | None = None
        self._deadline: Deadline | None = None
        self._warned_batches: set[str] = set()
        # Topics a record was not confirmed for: checked again before producing.
        self._suspect_topics: set[str] = set()
        # The current outage: since when no broker answers (None: as far as we know, one does), the latest
        # connection error, why, and when it was last logged.
        self._unreachable_since: float | None = None
        self._unreachable_last = 0.0
        self._unreachable_reason = ""
        self._unreachable_logged = -UNREACHABLE_LOG_SECONDS

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
        elif err.code() in _UNREACHABLE:
            self._unreachable(err)
        else:
            log.warning("Kafka client: %s", err.str())

    def _unreachable(self, err: KafkaError) -> None:
        now = time.monotonic()
        if self._outage() is None:
            self._unreachable_since, self._unreachable_reason = now, ""
        self._unreachable_last = now
        # "1/1 brokers are down" says less than the connection error before it.
        if err.code() != KafkaError._ALL_BROKERS_DOWN or not self._unreachable_reason:
            self._unreachable_reason = err.str()
        # A single dropped connection (an idle one the broker closed) is reconnected at once: not worth a line.
        lasting = err.code() == KafkaError._ALL_BROKERS_DOWN or now - self._unreachable_since >= 1.0
        if lasting and now - self._unreachable_logged >= UNREACHABLE_LOG_SECONDS:
            self._unreachable_logged = now
            log.error("%s", self._unreachable_text())

    def _outage(self) -> float | None:
        """When the current outage began, or None. librdkafka retries a connection at least every 10 s."""
        if self._unreachable_since is None or time.monotonic() - self._unreachable_last > _OUTAGE_QUIET_SECONDS:
            return None
        return self._unreachable_since

    def _unreachable_text(self, fallback: str = "") -> str:
        reason = self._unreachable_reason or fallback or "no broker answers"
        return f"cannot reach Kafka at {self.bootstrap}: {reason}"

    def _check_reachable(self, producer: Producer) -> None:
        """Fail once no broker has answered for UNREACHABLE_FAIL_SECONDS, confirmed by a metadata request.

        Nothing reports a broker coming back, so a request tells a lasting outage from one that is over.
        """
        since = self._outage()
        if since is not None and time.monotonic() - since >= UNREACHABLE_FAIL_SECONDS:
            self._confirm_reachable(producer, _CONFIRM_SECONDS)

    def _confirm_reachable(self, producer: Producer, timeout: float) -> None:
        """A metadata request: raise 'cannot reach Kafka' if no broker answers within `timeout`."""
        self._metadata(producer, None, timeout)
        self._unreachable_since = None
        self._unreachable_reason = ""

    def _metadata(self, producer: Producer, topic: str | None, timeout: float) -> Any:
        """Cluster metadata (of `topic` only, if given), or 'cannot reach Kafka' when no broker answers in time.

        Asked in slices: a failed authentication reaches `error_cb` only through `poll`, and must not be
        hidden behind the whole wait.
        """
        until = time.monotonic() + timeout
        while True:
            producer.poll(0)
            self._raise_if_fatal()
            try:
                return producer.list_topics(topic, timeout=max(min(_METADATA_SLICE_SECONDS, until - time.monotonic()),
                                                               0.1))
            except KafkaException as exc:
                if time.monotonic() < until:
                    producer.poll(min(0.1, max(until - time.monotonic(), 0)))  # a refused connection fails at once
                    continue
                producer.poll(0)  # error_cb: why no broker answered
                self._raise_if_fatal()
                msg = f"{self._unreachable_text(exc.args[0].str())}; check KAFKA_BOOTSTRAP_SERVERS"
                raise FatalSinkError(msg) from exc

    def _check_health(self, producer: Producer) -> None:
        self._raise_if_fatal()
        self._check_reachable(producer)

    def _budget_spent(self, what: str) -> BudgetExceededError:
        if self._outage() is not None:
            what += f"; {self._unreachable_text()}"
        return BudgetExceededError(what)

    def check_topics(self, topic: str, dlq_topic: str, deadline: Deadline) -> None:
        """Fail, naming it and how to create it, unless both topics exist."""
        for name, variable, what in ((topic, "KAFKA_TOPIC", "topic"),
                                     (dlq_topic, "KAFKA_DLQ_TOPIC", "dead-letter topic")):
            producer = self.producer
            meta = self._metadata(producer, name, max(min(TOPIC_CHECK_SECONDS, deadline.remaining()), 1.0))
            error = meta.topics[name].error
            if error is not None and error.code() in _TOPIC_MISSING:
                raise ConfigError(_missing_topic(what, name, variable, self.bootstrap))
            if error is not None:
                msg = f"cannot use the {what} {name!r} ({variable}) at {self.bootstrap}: {error.name()}: {error.str()}"
                raise SinkError(msg)
            self._suspect_topics.discard(name)

    def ensure_topics(self, topic: str, dlq_topic: str, deadline: Deadline) -> None:
        """Before producing: check again a topic a record was not confirmed for (deleted since, perhaps).

        The retry of a range that failed on a missing dead-letter topic then fails at once, naming it, instead
        of sending the range's good records again.
        """
        if topic in self._suspect_topics or dlq_topic in self._suspect_topics:
            self.check_topics(topic, dlq_topic, deadline)

    def produce(self, topic: str, key: bytes | None, value: bytes, where: Provenance,
                tracker: DeliveryTracker) -> None:
        self._produce_one(self.producer, topic, key, value, where, tracker)

    def _produce_one(self, producer: Producer, topic: str, key: bytes | None, value: bytes, where: Provenance,
                     tracker: DeliveryTracker) -> None:
        while True:
            try:
                producer.produce(topic, value, key, headers=where.headers(),
                                 on_delivery=partial(tracker.report, where))
            except BufferError:
                # Local queue full: serve delivery reports to make room, then try again.
                self._serve_reports(producer, 0.05)
                continue
            except KafkaException as exc:
                self._refused(exc, topic, key, value, where, tracker)
                return
            tracker.pending += 1
            return

    def _refused(self, exc: KafkaException, topic: str, key: bytes | None, value: bytes, where: Provenance,
                 tracker: DeliveryTracker) -> None:
        """A record `produce` would not take: hand it back if Kafka never would, else raise."""
        err = exc.args[0]
        if err.code() in UNDELIVERABLE:
            # The client judged this record by itself (its size), not with a batch.
            tracker.undeliverable.append(Undeliverable(topic, key, value, where, err, alone=True))
            return
        raise self._sink_error(err, topic) from exc

    def produce_all(self, topic: str, records: Sequence[tuple[bytes | None, bytes]], where: Provenance,
                    tracker: DeliveryTracker) -> int:
        """`produce` every (key, value) of `records` (one log group, from `where`) in order; returns the value bytes.

        The hot loop calls the C producer directly; a record it does not take at once is handled as `produce`
        does: a full queue is waited out, a refusal handed back or raised (from the first exception: producing
        again after a fatal error only yields a generic _FATAL). `pending` is counted up front: delivery reports
        are only served by `poll`, so none can arrive for these records before they are counted.
        """
        producer = self.producer
        if len(producer) > MAX_QUEUED:
            self._make_room(producer)
        produce, on_delivery, headers = producer.produce, partial(tracker.report, where), where.headers()
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
                self.produce(topic, key, value, where, tracker)
            except KafkaException as exc:
                tracker.pending -= 1
                self._refused(exc, topic, key, value, where, tracker)
        return size

    def probe(self, refused: Sequence[Undeliverable], deadline: Deadline) -> list[Undeliverable]:
        """Produce records the broker refused with their batch again, one per request; return those refused alone.

        The broker refuses a whole producer batch when it is over the topic's `max.message.bytes` (or holds one
        invalid record), so records that only shared a batch with an oversized one come back refused too. Sent
        alone, those are delivered; what is refused even so is guilty by itself. A separate producer sends them,
        one record per batch, so that none shares a request with the main producer's other records.
        """
        if not refused:
            return []
        if self._prober is None:
            self._prober = self._factory({**self._config, "linger.ms": 0, "batch.num.messages": 1})
        tracker = DeliveryTracker(alone=True)
        for item in refused:
            self._produce_one(self._prober, item.topic, item.key, item.value, item.where, tracker)
        while not tracker.done:
            self._check_health(self._prober)
            if deadline.expired():
                msg = (f"time budget spent re-sending {len(refused)} record(s) Kafka refused with their batch "
                       f"({tracker.pending} still unconfirmed)")
                raise self._budget_spent(msg)
            self._prober.poll(min(0.1, deadline.remaining()))
        if tracker.error is not None:
            raise self._sink_error(tracker.error, tracker.error_topic)
        self._warn_batches_over_limit(refused, tracker.undeliverable)
        return tracker.undeliverable

    def _warn_batches_over_limit(self, refused: Sequence[Undeliverable], guilty: list[Undeliverable]) -> None:
        """Once per topic: records refused in a batch but taken alone mean the batches are over its limit."""
        innocent = Counter(item.topic for item in refused) - Counter(item.topic for item in guilty)
        for topic, count in innocent.items():
            if topic not in self._warned_batches:
                self._warned_batches.add(topic)
                log.warning("Kafka refused %d record(s) for topic %s in batches over its max.message.bytes and took "
                            "them one by one; keep message.max.bytes (KAFKA_PRODUCER_CONFIG) at or below the "
                            "topic's max.message.bytes, or each such batch is sent twice", count, topic)

    def _make_room(self, producer: Producer) -> None:
        """Serve delivery reports until the queue is down to half of MAX_QUEUED.

        Records that cannot be delivered leave the queue too, failed, once `message.timeout.ms` passes.
        """
        while len(producer) > MAX_QUEUED // 2:
            self._serve_reports(producer, 0.01)

    def _serve_reports(self, producer: Producer, seconds: float) -> None:
        self._check_health(producer)
        if self._deadline is not None and self._deadline.expired():
            # Kafka is not taking records (down, or slower than the budget): fail now, not when FC kills us.
            msg = f"time budget spent waiting for room in the producer queue ({len(producer)} record(s) queued)"
            raise self._budget_spent(msg)
        producer.poll(seconds)

    def poll(self) -> None:
        self.producer.poll(0)

    def wait(self, tracker: DeliveryTracker, deadline: Deadline) -> None:
        """Serve delivery reports until `tracker` settles; raise on its first error or when the budget is spent."""
        producer = self.producer
        while not tracker.done:
            self._check_health(producer)
            if deadline.expired():
                msg = f"time budget spent with {tracker.pending} record(s) still unconfirmed by Kafka"
                raise self._budget_spent(msg)
            producer.poll(min(0.1, deadline.remaining()))
        if tracker.error is not None:
            raise self._sink_error(tracker.error, tracker.error_topic)

    def abandon(self) -> None:
        """Drop everything queued or in flight after a failure, so the next invocation starts clean.

        The dropped records belong to batches whose cursor was not saved: the retry sends them again.
        """
        for name in ("_producer", "_prober"):
            producer = getattr(self, name)
            if producer is None:
                continue
            try:
                producer.purge(in_queue=True, in_flight=True, blocking=True)
                producer.poll(0)
            except KafkaException as exc:
                log.warning("purging the producer failed: %s; it will be recreated", exc)
                setattr(self, name, None)
        if self._fatal is not None:
            self._producer = self._prober = None

    def close(self, timeout: float = 10.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)
            self._producer = None
        if self._prober is not None:
            self._prober.flush(timeout)
            self._prober = None

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            msg = f"Kafka producer cannot go on: {self._fatal}"
            raise FatalSinkError(msg)

    def _sink_error(self, err: KafkaError, topic: str | None = None) -> SinkError:
        if err.fatal() or err.code() in _FATAL_GLOBAL:
            self._fatal = f"{err.name()}: {err.str()}"
            return FatalSinkError(f"Kafka producer cannot go on: {self._fatal}")
        if topic is None:
            return SinkError(f"Kafka did not confirm a record: {err.name()}: {err.str()}")
        self._suspect_topics.add(topic)
        if err.code() in _TOPIC_MISSING:
            return SinkError(f"Kafka did not confirm a record for topic {topic!r}: "
                             f"{_missing_topic('topic', topic, 'KAFKA_TOPIC or KAFKA_DLQ_TOPIC', self.bootstrap)}")
        text = f"Kafka did not confirm a record for topic {topic!r}: {err.name()}: {err.str()}"
        if self._outage() is not None:
            text += f"; {self._unreachable_text()}"
        return SinkError(text)


def _missing_topic(what: str, name: str, variable: str, bootstrap: str) -> str:
    return (f"the {what} {name!r} ({variable}) does not exist at {bootstrap}: create it, e.g. "
            f"kafka-topics.sh --bootstrap-server {bootstrap} --create --topic {name}, or set {variable} to one "
            "that exists")


# Delivery errors a failed transaction gives its other records: they say nothing of why it failed.
_CONSEQUENCES = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT, KafkaError._STATE,
                           KafkaError._INCONSISTENT})

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
        # The open transaction's trackers: a broker refusal may surface only as a later produce's _STATE error.
        self._trackers: list[DeliveryTracker] = []
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

    def produce(self, topic: str, key: bytes | None, value: bytes, where: Provenance,
                tracker: DeliveryTracker) -> None:
        self._trackers.append(tracker)
        super().produce(topic, key, value, where, tracker)

    def produce_all(self, topic: str, records: Sequence[tuple[bytes | None, bytes]], where: Provenance,
                    tracker: DeliveryTracker) -> int:
        self._trackers.append(tracker)
        return super().produce_all(topic, records, where, tracker)

    def delivery_error(self) -> SinkError | None:
        """The first delivery error of the last transaction that was not merely a consequence of its failing."""
        for tracker in self._trackers:
            if tracker.error is not None and tracker.error.code() not in _CONSEQUENCES:
                return self._sink_error(tracker.error, tracker.error_topic)
        return None

    def refused_by_broker(self) -> list[Undeliverable]:
        """Records of the last transaction the broker refused with their batch (reports served so far)."""
        return [item for tracker in dict.fromkeys(self._trackers) for item in tracker.undeliverable
                if not item.alone]

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
        try:
            self._producer.abort_transaction(max(deadline.remaining(), 1.0))
            self._in_transaction = False
            self._producer.poll(0)  # the aborted records' reports: a refusal among them explains the failure
            # A topic a record of the transaction was not confirmed for is checked again before the retry.
            self._suspect_topics.update(t.error_topic for t in self._trackers if t.error_topic)
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
                              f"{err.str()}); another instance may own this shard now (fenced)")

    def _txn_error(self, op: str, err: KafkaError) -> SinkError:
        if err.fatal() or err.code() in _FATAL_GLOBAL:
            self._drop()
            return FatalSinkError(f"{op} of transaction {self.transactional_id} failed for good ({err.name()}: "
                                  f"{err.str()}); another instance may own this shard now (fenced)")
        text = f"{op} of transaction {self.transactional_id} failed: {err.name()}: {err.str()}"
        if self._outage() is not None:
            text += f"; {self._unreachable_text()}"
        return SinkError(text)

    def _drop(self) -> None:
        self._producer = None
        self._initialized = False
        self._in_transaction = False
        self.committed = None
