"""The one loop over a shard range: event → source → projection → sink → checkpoint, under a commit strategy.

Steps of a run:
  1. the strategy prepares (exactly-once: `init_transactions`, which fences older instances of the shard);
  2. the checkpoint is loaded and `resume_point` decides where to start; a shard's first range is recorded
     before anything is read;
  3. per page (one PullLogs response): every log is projected and the dead-letter tolerance checks the page;
     good records go to the topic and rejects to the dead-letter topic under the page's delivery tracker;
     observers see the projected page and may emit through the same tracker; the strategy takes the page and
     commits pages in order (at-least-once: each page once Kafka confirmed it and every page before it;
     exactly-once: pages in one transaction with their checkpoint record);
  4. when the source is exhausted the range is done: the strategy commits the rest, up to the range's end.
A failure goes to the strategy, which either rewinds to its last commit so the loop reads again from there, or
gives up and lets the error fail the invocation (the trigger's retry resumes from the checkpoint).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from checkpoints.base import Checkpoint, CheckpointKey
from common.deadline import Deadline
from common.errors import BudgetExceededError, SinkError
from processor.dead_letter import Provenance, dead_letter_value
from processor.delivery.observers import BatchObserver, ProjectedGroup, ProjectedPage
from processor.delivery.resume import resume_point
from processor.delivery.summary import Counters, Summary
from processor.event import TriggerEvent
from processor.kafka.tracking import DeliveryTracker, Sink
from processor.projection import Columns, Projected, Projector
from processor.sls.retry import RetryStats
from processor.sls.shards import Logstore
from processor.sls.source import Batch, Gap, SlsClient

log = logging.getLogger(__name__)


@dataclass
class RangeRun:
    """Everything one run over a range works with."""

    event: TriggerEvent
    client: SlsClient
    projector: Projector
    sink: Sink
    key: CheckpointKey
    topic: str
    dlq_topic: str
    source_config: Any
    retrying: Any
    stats: RetryStats
    deadline: Deadline
    observers: Sequence[BatchObserver] = field(default_factory=tuple)


@dataclass
class ProducedPage:
    """A page handed to Kafka: its cursors, the tracker of everything produced for it, and what it counts."""

    batch: Batch
    tracker: DeliveryTracker
    counters: Counters


class CommitStrategy(Protocol):
    """How pages become committed progress; see `at_least_once` and `transactional`."""

    def prepare(self) -> None: ...
    def load(self) -> Checkpoint | None: ...
    def record_origin(self, checkpoint: Checkpoint) -> None: ...
    def before_page(self) -> None: ...
    def add(self, page: ProducedPage) -> None: ...
    def finish(self, end_cursor: str) -> None: ...
    def recover(self, exc: BaseException, attempt: int) -> bool: ...


class RangeLoop:
    """Runs one range; `strategy` is built with this loop and calls back `committed` for what it commits."""

    def __init__(self, run: RangeRun) -> None:
        self.run = run
        ev = run.event
        self.summary = Summary(project=ev.project, logstore=ev.logstore, shard=ev.shard,
                               begin_cursor=ev.begin_cursor, end_cursor=ev.end_cursor)
        # Where the stretch this run extends begins; every checkpoint it saves carries it.
        self.origin: str | None = None
        self._gaps: list[dict[str, Any]] = []

    def execute(self, strategy: CommitStrategy) -> Summary:
        started = time.monotonic()
        strategy.prepare()
        cursor = self._start(strategy)
        attempt = 0
        while cursor is not None:
            attempt += 1
            try:
                self._deliver_from(cursor, strategy)
                cursor = None
            except BaseException as exc:
                if not strategy.recover(exc, attempt):
                    raise
                self._gaps.clear()
                cursor = self.summary.cursor_reached
        return self._finish(started)

    # ------------------------------------------------------------------------------------------ commits

    def checkpoint(self, cursor: str) -> Checkpoint:
        return Checkpoint(cursor, self.origin)

    def committed(self, counters: Counters, cursor: str) -> None:
        """Count pages (and gaps met before them) as delivered, up to `cursor`: a strategy calls this after its
        checkpoint for `cursor` was saved."""
        self.summary.add(counters)
        self.summary.cursor_reached = cursor

    def pending_gaps(self) -> Counters:
        """Gaps the source met since the last page, for a commit that ends the range."""
        gaps, self._gaps = self._gaps, []
        return Counters(gaps=gaps)

    # ----------------------------------------------------------------------------------------- the loop

    def _start(self, strategy: CommitStrategy) -> str | None:
        """Load the checkpoint and decide where this run starts; None when the range is already delivered."""
        ev, s = self.run.event, self.summary
        if ev.cursor_time is not None:
            s.lag_seconds = round(time.time() - ev.cursor_time, 3)
        saved = strategy.load()
        state, start = resume_point(ev, saved)
        s.start_cursor = s.cursor_reached = start
        s.resumed_from_checkpoint = state in ("resume", "catch-up")
        self.origin = ev.begin_cursor if saved is None or state == "unproven" else saved.origin
        key = self.run.key
        if state == "first":
            strategy.record_origin(Checkpoint(start, start))
        elif state == "catch-up":
            log.warning("checkpoint %s of %s lies before the range [%s, %s): an earlier range was not confirmed; "
                        "delivering from the checkpoint", start, key, ev.begin_cursor, ev.end_cursor)
        elif state == "unproven":
            log.warning("checkpoint of %s proves delivery only from %s on, after the range's begin %s; delivering "
                        "the range from its begin", key, saved and saved.origin, ev.begin_cursor)
        elif state == "done":
            s.already_delivered = True
            s.cursor_reached = ev.end_cursor
            log.info("range of %s already delivered (checkpoint %s); nothing to do", key, start)
            return None
        return start

    def _deliver_from(self, cursor: str, strategy: CommitStrategy) -> None:
        run, ev = self.run, self.run.event
        run.sink.set_deadline(run.deadline)
        source = Logstore(run.client, ev.project, ev.logstore).build_part(
            ev.shard, cursor, ev.end_cursor, run.source_config, run.retrying, self._on_gap, run.deadline)
        with closing(iter(source)) as pages:  # stops the prefetch thread now, not when a traceback is collected
            for batch in pages:
                strategy.before_page()
                strategy.add(self._produce(batch))
                run.sink.poll()
                if run.deadline.expired() and batch.next_cursor != ev.end_cursor:
                    msg = (f"time budget spent after reaching cursor {self.summary.cursor_reached} of "
                           f"[{ev.begin_cursor}, {ev.end_cursor}); progress is saved, the retry continues from there")
                    raise BudgetExceededError(msg)
        # The source stops only at the end, or where it was told to skip what expired: the range is done.
        strategy.finish(ev.end_cursor)

    def _on_gap(self, gap: Gap) -> None:
        self._gaps.append(gap.as_dict())

    def _produce(self, batch: Batch) -> ProducedPage:
        run, ev = self.run, self.run.event
        sink, topic, dlq = run.sink, run.topic, run.dlq_topic
        sink.ensure_topics(topic, dlq, run.deadline)
        tracker = DeliveryTracker()
        counters = Counters(log_groups=len(batch.groups), bytes_read=batch.raw_size, batches=1, gaps=self._gaps)
        self._gaps = []
        projector, produce_all = run.projector, sink.produce_all
        # The whole page is projected before any of it is produced: a page the dead-letter tolerance refuses
        # must reach neither topic. Observers are given the projection's columns too.
        if run.observers:
            projected = [projector.project_with_columns(group) for group in batch.groups]
        else:
            projected = [(projector.project_group(group), None) for group in batch.groups]
        page = [logs for logs, _ in projected]
        run.projector.check_page(page, f"the page at cursor {batch.cursor} of shard {ev.shard}")
        wheres = [Provenance(ev.project, ev.logstore, ev.shard, batch.cursor, i) for i in range(len(page))]
        for where, (good, bad) in zip(wheres, page, strict=True):
            counters.bytes_produced += produce_all(topic, good, where, tracker)
            counters.produced += len(good)
            for rejected in bad:
                value = dead_letter_value(rejected.reason, rejected.log, where, topic)
                sink.produce(dlq, rejected.key, value, where, tracker)
            counters.dead_lettered += len(bad)
        counters.records_read = counters.produced + counters.dead_lettered
        if run.observers:
            self._observe(batch, projected, wheres, tracker)
        # The parsed log groups are not needed once produced: only the cursors stay while Kafka confirms.
        return ProducedPage(replace(batch, groups=()), tracker, counters)

    def _observe(self, batch: Batch, page: list[tuple[Projected, Columns | None]], wheres: list[Provenance],
                 tracker: DeliveryTracker) -> None:
        groups = [ProjectedGroup(where, good, group, bad, columns)
                  for where, group, ((good, bad), columns) in zip(wheres, batch.groups, page, strict=True)]
        projected = ProjectedPage(self.run.event.shard, batch.cursor, batch.next_cursor, groups)
        sink, where = self.run.sink, wheres[0] if wheres else None

        def emit(topic: str, key: bytes | None, value: bytes) -> None:
            sink.produce(topic, key, value, where, tracker)

        for observer in self.run.observers:
            observer.on_batch(projected, emit)

    def dead_letter_refused(self, page: ProducedPage) -> ProducedPage:
        """Dead-letter the records Kafka refused for good; the page settles once those letters are confirmed.

        The broker refuses a whole producer batch for one record over the topic's limit, so records it refused
        with their batch are first sent again alone: only a record refused on its own is dead-lettered.
        """
        run = self.run
        refused = page.tracker.undeliverable
        guilty = [item for item in refused if item.alone]
        guilty += run.sink.probe([item for item in refused if not item.alone], run.deadline)
        tracker = DeliveryTracker()
        for item in guilty:
            if item.topic == run.dlq_topic:
                msg = (f"the dead-letter topic {run.dlq_topic} refused a record ({item.reason}); raise its "
                       "max.message.bytes")
                raise SinkError(msg)
            reason = f"Kafka refused the record for topic {item.topic}: {item.reason}"
            value = dead_letter_value(reason, item.value, item.where, item.topic)
            run.sink.produce(run.dlq_topic, item.key, value, item.where, tracker)
        if tracker.undeliverable:
            msg = f"the dead-letter topic {run.dlq_topic} refused a record too: {tracker.undeliverable[0].reason}"
            raise SinkError(msg)
        if guilty:
            log.warning("%d record(s) refused by Kafka were dead-lettered", len(guilty))
        moved = sum(item.topic == run.topic for item in guilty)
        counters = replace(page.counters, produced=page.counters.produced - moved,
                           dead_lettered=page.counters.dead_lettered + moved)
        return ProducedPage(page.batch, tracker, counters)

    def _finish(self, started: float) -> Summary:
        s = self.summary
        s.sls_retries = self.run.stats.sls_retries
        s.aborted_transactions = self.run.stats.aborted_transactions
        s.duration_seconds = round(time.monotonic() - started, 3)
        if s.duration_seconds > 0:
            s.records_per_second = round(s.records_read / s.duration_seconds, 1)
        return s

