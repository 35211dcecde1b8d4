"""At-least-once Kafka sink: batched produce with one delivery tracker per batch, confirmed before a cursor is saved.

Guarantee: at-least-once. The producer is idempotent (acks=all), so librdkafka's own retries never duplicate
or reorder; a record is counted delivered only when its delivery report says so, and the first delivery error
of a batch is raised when the batch is settled. Records Kafka rejects for good (too large, invalid) are handed
back with their provenance, kept on our side (delivery reports carry no headers), so the pipeline can dead-letter
them with the broker's reason. The broker refuses a whole producer batch for one bad record, so `probe` sends
such records again one per request to tell the guilty ones from those that only shared their batch.

A Kafka nobody can reach is reported as one "cannot reach Kafka at <bootstrap servers>" line at a bounded rate,
and fails the invocation once it has lasted UNREACHABLE_FAIL_SECONDS; librdkafka's own log goes through Python
logging. The topics are checked to exist before anything is produced to them.

One class, over 250 lines on purpose: the producer, its outage state and its topic checks are one piece of
per-instance state that every produce and wait consults, and split apart they would only pass it around.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from common.deadline import Deadline
from common.errors import BudgetExceededError, ConfigError, FatalSinkError, SinkError
from processor.dead_letter import Provenance
from processor.kafka.client_log import librdkafka_log
from processor.kafka.errors import TOPIC_MISSING, is_fatal, missing_topic
from processor.kafka.tracking import MAX_QUEUED, UNDELIVERABLE, DeliveryTracker, Undeliverable

log = logging.getLogger(__name__)

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
        # Trackers of the pages not settled yet, newest last: the first delivery error among them is raised at
        # the next produce (latched), not only when its page settles pages later.
        self._trackers: list[DeliveryTracker] = []
        # Topics produced to since the last `abandon` (at-least-once) or `begin` (transactional).
        self._topics: set[str] = set()
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
        if is_fatal(err):
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
            if error is not None and error.code() in TOPIC_MISSING:
                raise ConfigError(missing_topic(what, name, variable, self.bootstrap))
            if error is not None:
                msg = f"cannot use the {what} {name!r} ({variable}) at {self.bootstrap}: {error.name()}: {error.str()}"
                raise SinkError(msg, error.code())
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
        self._follow(tracker, topic)
        self._produce_one(self.producer, topic, key, value, where, tracker)

    def _follow(self, tracker: DeliveryTracker, topic: str) -> None:
        """Raise a delivery error already reported for a page in flight; then follow `tracker` (and `topic`)."""
        self._topics.add(topic)
        for followed in self._trackers:
            if followed.error is not None:
                raise self._sink_error(followed.error, followed.error_topic)
        if not self._trackers or self._trackers[-1] is not tracker:
            # Settled pages are let go; those with refused records stay until the run has dealt with them.
            self._trackers = [t for t in self._trackers if not t.done or t.undeliverable]
            self._trackers.append(tracker)

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
        self._follow(tracker, topic)
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
        try:
            self.producer.poll(0)
        except KafkaException as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: KafkaException) -> SinkError:
        """Our error for a `KafkaException` the client raised (fatal ones drop the producer)."""
        return self._sink_error(exc.args[0])

    def wait(self, tracker: DeliveryTracker, deadline: Deadline) -> None:
        """Serve delivery reports until `tracker` settles; raise on its first error or when the budget is spent."""
        producer = self.producer
        # Waiting for the newest page is waiting for everything queued, and nothing more is produced meanwhile:
        # `flush` sends what lingers (linger.ms) at once, where `poll` would let the last batches wait it out.
        serve = producer.flush if self._trackers and tracker is self._trackers[-1] else producer.poll
        while not tracker.done:
            self._check_health(producer)
            if deadline.expired():
                msg = f"time budget spent with {tracker.pending} record(s) still unconfirmed by Kafka"
                raise self._budget_spent(msg)
            serve(min(0.1, deadline.remaining()))
        if tracker.error is not None:
            raise self._sink_error(tracker.error, tracker.error_topic)

    def abandon(self) -> None:
        """Drop everything queued or in flight after a failure, so the next invocation starts clean.

        The dropped records belong to batches whose cursor was not saved: the retry sends them again.
        """
        self._trackers = []
        self._topics = set()
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
        """The error for `err`, carrying its code: fatal (the producer is dropped) or retriable by the run."""
        code = err.code()
        if is_fatal(err):
            self._fatal = f"{err.name()}: {err.str()}"
            return FatalSinkError(f"Kafka producer cannot go on: {self._fatal}", code)
        if topic is None:
            return SinkError(f"Kafka did not confirm a record: {err.name()}: {err.str()}", code)
        self._suspect_topics.add(topic)
        if code in TOPIC_MISSING:
            return SinkError(f"Kafka did not confirm a record for topic {topic!r}: "
                             f"{missing_topic('topic', topic, 'KAFKA_TOPIC or KAFKA_DLQ_TOPIC', self.bootstrap)}",
                             code)
        text = f"Kafka did not confirm a record for topic {topic!r}: {err.name()}: {err.str()}"
        if self._outage() is not None:
            text += f"; {self._unreachable_text()}"
        return SinkError(text, code)
