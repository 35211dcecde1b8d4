"""Drive one shard range: event → source → projection → sink → checkpoint (at-least-once).

Commit order, per batch (one PullLogs page):
  1. project every log; good records go to the topic, rejects to the dead-letter topic, both tracked by the
     batch's `DeliveryTracker` (no flush per record or per batch: batches overlap in the producer);
  2. when every record of the *oldest* in-flight batch is confirmed by Kafka (and the broker's permanent
     refusals are dead-lettered and confirmed too), save that batch's `next_cursor`;
  3. repeat in order, so the saved cursor never passes an unconfirmed record.
A failure anywhere purges what is unconfirmed and raises: the retry resumes at the saved cursor and re-sends at
most the batches that were in flight.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from checkpoints.base import Checkpoint, CheckpointKey, CheckpointStore
from processor.dead_letter import Provenance, dead_letter_value
from processor.deadline import Deadline
from processor.errors import BudgetExceededError, SinkError
from processor.event import TriggerEvent, cursor_position
from processor.projection import Projector
from processor.retry import RetryStats
from processor.sink import DeliveryTracker, Sink
from processor.source import Batch, Gap, ShardRangeSource, SlsClient

log = logging.getLogger(__name__)

# Batches produced but not yet confirmed; bounds memory and what a failure re-sends.
MAX_IN_FLIGHT_BATCHES = 4


@dataclass
class Summary:
    """What one invocation did; `as_dict` is the handler's JSON-serialisable return value."""

    project: str
    logstore: str
    shard: int
    begin_cursor: str
    end_cursor: str
    start_cursor: str = ""
    cursor_reached: str = ""
    resumed_from_checkpoint: bool = False
    already_delivered: bool = False
    log_groups: int = 0
    records_read: int = 0
    produced: int = 0
    dead_lettered: int = 0
    bytes_read: int = 0
    bytes_produced: int = 0
    sls_retries: int = 0
    kafka_retries: int = 0
    batches: int = 0
    gaps: list[dict[str, Any]] = field(default_factory=list)
    duration_seconds: float = 0.0
    lag_seconds: float | None = None
    records_per_second: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _InFlight:
    batch: Batch
    tracker: DeliveryTracker
    records: int
    dead_letters: int


def resume_point(event: TriggerEvent, saved: Checkpoint | None) -> tuple[str, str]:
    """Where a run over `event`'s range starts, given the stored checkpoint: (state, cursor).

    - 'first': nothing stored; the range's begin is recorded as the shard's origin before anything is read, so
      that a later range finds this one's stretch behind it if this run fails;
    - 'done': the stored stretch proves the whole range delivered;
    - 'resume': the checkpoint lies inside the range;
    - 'catch-up': the checkpoint lies before the range: [checkpoint, begin) was never confirmed (an earlier
      invocation failed and the trigger moved on), so the run starts there rather than jump over it;
    - 'unproven': the stored stretch starts after the range's begin (another range was recorded first, or
      a per-instance file store never saw this one), so nothing proves the range delivered: it is delivered
      from its begin, and its stretch joins the stored one when they meet;
    - 'begin': the checkpoint is exactly the range's begin.
    """
    begin, end = event.begin_cursor, event.end_cursor
    if saved is None:
        return "first", begin
    if saved.origin is not None and cursor_position(saved.origin, "checkpoint origin") > cursor_position(begin):
        return "unproven", begin
    if saved.covers(begin, end):
        return "done", saved.cursor
    pos = cursor_position(saved.cursor, "checkpoint")
    if pos > cursor_position(begin):
        return "resume", saved.cursor
    if pos < cursor_position(begin):
        return "catch-up", saved.cursor
    return "begin", begin


class RangePipeline:
    """One invocation's run over one shard range, at-least-once."""

    def __init__(self, event: TriggerEvent, client: SlsClient, projector: Projector, sink: Sink,
                 store: CheckpointStore, key: CheckpointKey, topic: str, dlq_topic: str, settings_source: Any,
                 retrying: Any, stats: RetryStats, deadline: Deadline) -> None:
        self.event = event
        self.client = client
        self.projector = projector
        self.sink = sink
        self.store = store
        self.key = key
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.source_config = settings_source
        self.retrying = retrying
        self.stats = stats
        self.deadline = deadline
        # Where the stretch this run extends begins; every checkpoint it saves carries it.
        self.origin: str | None = None
        self.summary = Summary(event.project, event.logstore, event.shard, event.begin_cursor, event.end_cursor)

    def start(self) -> str | None:
        """Load the checkpoint and decide where this run starts; None when the range is already delivered."""
        ev, s = self.event, self.summary
        if ev.cursor_time is not None:
            s.lag_seconds = round(time.time() - ev.cursor_time, 3)
        saved = self.load_checkpoint()
        state, start = resume_point(ev, saved)
        s.start_cursor = s.cursor_reached = start
        s.resumed_from_checkpoint = state in ("resume", "catch-up")
        self.origin = ev.begin_cursor if saved is None or state == "unproven" else saved.origin
        if state == "first":
            self.record_origin(Checkpoint(start, start))
        if state == "catch-up":
            log.warning("checkpoint %s of %s lies before the range [%s, %s): an earlier range was not confirmed; "
                        "delivering from the checkpoint", start, self.key, ev.begin_cursor, ev.end_cursor)
        if state == "unproven":
            log.warning("checkpoint of %s proves delivery only from %s on, after the range's begin %s; delivering "
                        "the range from its begin", self.key, saved and saved.origin, ev.begin_cursor)
        if state == "done":
            s.already_delivered = True
            s.cursor_reached = ev.end_cursor
            log.info("range of %s already delivered (checkpoint %s); nothing to do", self.key, start)
            return None
        return start

    def load_checkpoint(self) -> Checkpoint | None:
        return self.store.load(self.key)

    def record_origin(self, checkpoint: Checkpoint) -> None:
        """Record a shard's first range before reading it (its own transaction in exactly-once mode)."""
        self.save(checkpoint.cursor)

    def save(self, cursor: str) -> None:
        self.store.save(self.key, Checkpoint(cursor, self.origin))

    def run(self) -> Summary:
        started = time.monotonic()
        ev, s = self.event, self.summary
        start = self.start()
        if start is None:
            return self._finish(started)
        self.sink.set_deadline(self.deadline)
        source = ShardRangeSource(self.client, ev.project, ev.logstore, ev.shard, start, ev.end_cursor,
                                  self.source_config, self.retrying, self._on_gap, self.deadline)
        in_flight: deque[_InFlight] = deque()
        pages = iter(source)
        try:
            for batch in pages:
                in_flight.append(self._produce(batch))
                self.sink.poll()
                self._settle(in_flight, block=len(in_flight) >= MAX_IN_FLIGHT_BATCHES)
                if self.deadline.expired():
                    msg = (f"time budget spent after reaching cursor {s.cursor_reached} of [{ev.begin_cursor}, "
                           f"{ev.end_cursor}); progress is saved, the retry continues from there")
                    raise BudgetExceededError(msg)
            while in_flight:
                self._settle(in_flight, block=True)
        except BaseException as exc:
            try:
                if isinstance(exc, BudgetExceededError):
                    # What Kafka confirmed while the next page was awaited is progress the retry need not repeat.
                    self.sink.poll()
                    self._settle(in_flight, block=False)
            finally:
                self.sink.abandon()
            raise
        finally:
            pages.close()  # stops the prefetch thread now, not when the traceback is collected
        if s.gaps and s.cursor_reached != ev.end_cursor:
            # The rest of the range expired too (policy 'end' or all of it gone): the range is done.
            s.cursor_reached = ev.end_cursor
            self.save(ev.end_cursor)
        return self._finish(started)

    def _finish(self, started: float) -> Summary:
        s = self.summary
        s.sls_retries = self.stats.sls_retries
        s.kafka_retries = self.stats.kafka_retries
        s.duration_seconds = round(time.monotonic() - started, 3)
        if s.duration_seconds > 0:
            s.records_per_second = round(s.records_read / s.duration_seconds, 1)
        return s

    def _on_gap(self, gap: Gap) -> None:
        self.summary.gaps.append(gap.as_dict())

    def _produce(self, batch: Batch) -> _InFlight:
        ev, s = self.event, self.summary
        tracker = DeliveryTracker()
        produce_all, project = self.sink.produce_all, self.projector.project_group
        topic, dlq = self.topic, self.dlq_topic
        self.sink.ensure_topics(topic, dlq, self.deadline)
        records = dead = 0
        # The whole page is projected before any of it is produced: a page the dead-letter tolerance refuses
        # must reach neither topic.
        page = [project(group) for group in batch.groups]
        self.projector.check_page(page, f"the page at cursor {batch.cursor} of shard {ev.shard}")
        for index, (good, bad) in enumerate(page):
            where = Provenance(ev.project, ev.logstore, ev.shard, batch.cursor, index)
            s.bytes_produced += produce_all(topic, good, where, tracker)
            records += len(good)
            for rejected in bad:
                value = dead_letter_value(rejected.reason, rejected.log, where, topic)
                self.sink.produce(dlq, rejected.key, value, where, tracker)
            dead += len(bad)
        s.log_groups += len(batch.groups)
        s.records_read += records + dead
        s.bytes_read += batch.raw_size
        s.batches += 1
        # The parsed log groups are not needed once produced: only the cursors stay while Kafka confirms.
        return _InFlight(replace(batch, groups=()), tracker, records, dead)

    def _settle(self, in_flight: deque[_InFlight], block: bool) -> None:
        """Save the cursor of every confirmed batch at the head of the queue; with `block`, wait for the head."""
        while in_flight:
            head = in_flight[0]
            if block:
                self.sink.wait(head.tracker, self.deadline)
            elif not head.tracker.done:
                return
            if head.tracker.error is not None:
                self.sink.wait(head.tracker, self.deadline)  # raises the batch's delivery error
            if head.tracker.undeliverable:
                head = self._dead_letter_refused(head)
                in_flight[0] = head
                continue
            in_flight.popleft()
            self.summary.produced += head.records
            self.summary.dead_lettered += head.dead_letters
            self.save(head.batch.next_cursor)
            self.summary.cursor_reached = head.batch.next_cursor
            block = False

    def _dead_letter_refused(self, head: _InFlight) -> _InFlight:
        """Dead-letter the records Kafka refused for good; the batch settles once those letters are confirmed.

        The broker refuses a whole producer batch for one record over the topic's limit, so records it refused
        with their batch are first sent again alone: only a record refused on its own is dead-lettered.
        """
        refused = head.tracker.undeliverable
        guilty = [item for item in refused if item.alone]
        guilty += self.sink.probe([item for item in refused if not item.alone], self.deadline)
        tracker = DeliveryTracker()
        moved = 0
        for item in guilty:
            if item.topic == self.dlq_topic:
                msg = (f"the dead-letter topic {self.dlq_topic} refused a record ({item.reason}); raise its "
                       "max.message.bytes")
                raise SinkError(msg)
            reason = f"Kafka refused the record for topic {item.topic}: {item.reason}"
            value = dead_letter_value(reason, item.value, item.where, item.topic)
            self.sink.produce(self.dlq_topic, item.key, value, item.where, tracker)
            moved += 1
        if tracker.undeliverable:
            msg = f"the dead-letter topic {self.dlq_topic} refused a record too: {tracker.undeliverable[0].reason}"
            raise SinkError(msg)
        if guilty:
            log.warning("%d record(s) refused by Kafka were dead-lettered", len(guilty))
        return _InFlight(head.batch, tracker, head.records - moved, head.dead_letters + moved)
