"""Exactly-once run over one shard range: records, dead letters and the checkpoint in Kafka transactions.

Commit order:
  1. `init_transactions` (fences an older instance with this shard's transactional id, aborts its leftovers);
  2. load the last committed cursor (read_committed) and start there;
  3. per transaction: begin, produce the records of one or more batches and their dead letters, produce the
     checkpoint record (the next cursor), commit. Nothing of a transaction is visible before its commit.
An abortable failure aborts and re-reads from the last committed cursor within the time budget; a fatal one
(fenced, authentication) fails the invocation.
"""

from __future__ import annotations

import logging
import time
from contextlib import closing
from typing import Any

from checkpoints.base import Checkpoint
from checkpoints.kafka_txn import KafkaCheckpointStore
from processor.errors import BudgetExceededError, CheckpointError, FatalSinkError, SinkError
from processor.pipeline import RangePipeline, Summary, _InFlight
from processor.sink import TransactionalKafkaSink
from processor.source import ShardRangeSource

log = logging.getLogger(__name__)

# Transactions tried from one committed cursor within an invocation before giving the failure to the trigger.
MAX_ATTEMPTS = 5
# Summary counters an attempt adds while reading; an aborted attempt's share is taken back out.
_READ_COUNTERS = ("log_groups", "records_read", "bytes_read", "bytes_produced", "batches")


class ExactlyOncePipeline(RangePipeline):
    sink: TransactionalKafkaSink
    store: KafkaCheckpointStore

    def __init__(self, *args: Any, max_records: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_records = max_records
        self._committed: dict[str, Any] = {}

    def run(self) -> Summary:
        started = time.monotonic()
        s = self.summary
        self._ready()
        if self.start() is None:
            return self._finish(started)
        attempt = 0
        self._committed = self._counters()
        while True:
            attempt += 1
            try:
                self._ready()
                self._run_from(s.cursor_reached)
                return self._finish(started)
            except FatalSinkError:
                self.sink.abort(self.deadline)
                raise
            except SinkError as exc:
                self.sink.abort(self.deadline)
                # The summary describes what this invocation delivered: drop what the aborted attempt counted.
                self._restore(self._committed)
                # A refused batch fails the transaction as _STATE on a later produce or at commit, whichever comes
                # first; its delivery reports tell the real cause, and that every retry would fail the same way.
                refused = self.sink.refused_by_broker()
                if refused:
                    raise self.sink.refusal_error(refused) from exc
                if self.deadline.expired() or attempt == MAX_ATTEMPTS:
                    raise
                log.warning("transaction aborted (%s); re-reading from committed cursor %s", exc, s.cursor_reached)
                self.stats.kafka_retries += 1
            except BaseException as exc:
                self.sink.abort(self.deadline)
                # A checkpoint write fails when the transaction already has (a record for a missing topic, say):
                # that record's delivery error is the one worth reporting.
                cause = self.sink.delivery_error() if isinstance(exc, CheckpointError) else None
                if cause is not None:
                    raise cause from exc
                raise

    def load_checkpoint(self) -> Checkpoint | None:
        # The read waits for the partition's open transactions: bounded by the invocation, like every wait.
        return self.store.load(self.key, self.deadline)

    def _counters(self) -> dict[str, Any]:
        s = self.summary
        return {"gaps": len(s.gaps), **{name: getattr(s, name) for name in _READ_COUNTERS}}

    def _restore(self, counters: dict[str, Any]) -> None:
        del self.summary.gaps[counters["gaps"]:]
        for name in _READ_COUNTERS:
            setattr(self.summary, name, counters[name])

    def _ready(self) -> None:
        """(Re)initialise the producer after it was dropped, and point the checkpoint store at it."""
        self.sink.set_deadline(self.deadline)
        self.sink.init(self.deadline)
        self.store.bind(self.sink.producer)

    def _run_from(self, cursor: str) -> None:
        ev = self.event
        source = ShardRangeSource(self.client, ev.project, ev.logstore, ev.shard, cursor, ev.end_cursor,
                                  self.source_config, self.retrying, self._on_gap, self.deadline)
        batches: list[_InFlight] = []
        records = 0
        with closing(iter(source)) as pages:
            for batch in pages:
                if not batches:
                    self.sink.begin()
                entry = self._produce(batch)
                if entry.tracker.undeliverable:
                    entry = self._dead_letter_refused(entry)
                batches.append(entry)
                records += entry.records + entry.dead_letters
                self.sink.poll()
                if records >= self.max_records:
                    self._commit(batches, batch.next_cursor)
                    batches, records = [], 0
                if self.deadline.expired() and not (batch.next_cursor == ev.end_cursor and not batches):
                    # (A range whose last page was just committed is done: failing it would only make the
                    # retry report "already delivered" instead of this run's summary.)
                    msg = (f"time budget spent after committing cursor {self.summary.cursor_reached}; the retry "
                           "continues from there")
                    raise BudgetExceededError(msg)
        final = batches[-1].batch.next_cursor if batches else self.summary.cursor_reached
        if self.summary.gaps and final != ev.end_cursor:
            # The source stopped at an expired stretch it was told to skip: the range is done.
            final = ev.end_cursor
        if batches or final != self.summary.cursor_reached:
            if not batches:
                self.sink.begin()
            self._commit(batches, final)

    def record_origin(self, checkpoint: Checkpoint) -> None:
        self.sink.begin()
        self.store.save(self.key, checkpoint)
        self.sink.commit(self.deadline)

    def _commit(self, batches: list[_InFlight], cursor: str) -> None:
        self.save(cursor)
        # A commit that returns means every record of the transaction was delivered.
        self.sink.commit(self.deadline)
        for entry in batches:
            self.summary.produced += entry.records
            self.summary.dead_lettered += entry.dead_letters
        self.summary.cursor_reached = cursor
        self._committed = self._counters()
