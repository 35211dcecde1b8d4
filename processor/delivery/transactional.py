"""Exactly-once commits: records, dead letters, observers' records and the checkpoint in Kafka transactions.

Commit order:
  1. `init_transactions` fences an older instance with this shard's transactional id and aborts its leftovers;
  2. the last committed checkpoint is read (read_committed) and the run starts there;
  3. per transaction: begin, produce the records of one or more pages, produce the checkpoint record (the next
     cursor) to the checkpoint topic, commit. Nothing of a transaction is visible before its commit.
An abortable failure aborts and re-reads from the last committed cursor, within the time budget and at most
`MAX_ATTEMPTS` times; a fatal one (fenced, authentication) fails the invocation.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException

from checkpoints.base import Checkpoint
from checkpoints.kafka_txn import KafkaCheckpointStore
from common.errors import CheckpointError, FatalSinkError, SinkError
from processor.delivery.loop import ProducedPage, RangeLoop
from processor.delivery.summary import Counters
from processor.kafka.transactional import TransactionalKafkaSink

log = logging.getLogger(__name__)

# Transactions tried from one committed cursor within an invocation before giving the failure to the trigger.
MAX_ATTEMPTS = 5


class Transactional:
    """Commit strategy over a transactional sink; it writes its own checkpoint records (`KafkaCheckpointStore`
    only reads them)."""

    def __init__(self, loop: RangeLoop, sink: TransactionalKafkaSink, store: KafkaCheckpointStore,
                 max_records: int) -> None:
        self.loop = loop
        self.run = loop.run
        self.sink = sink
        self.store = store
        self.max_records = max_records
        self._pages: list[ProducedPage] = []
        self._records = 0

    def prepare(self) -> None:
        """(Re)initialise the producer after it was dropped; fences any older instance of this shard."""
        self.sink.set_deadline(self.run.deadline)
        self.sink.init(self.run.deadline)

    def load(self) -> Checkpoint | None:
        """What this warm producer committed last, else the checkpoint topic's latest.

        No other instance can have committed for the shard while this producer keeps its producer id (it would
        have fenced this one, whose next commit then fails and drops it), so the topic is scanned only after a
        new `init_transactions`. The scan waits for the partition's open transactions, bounded by the deadline.
        """
        if self.sink.committed is not None:
            return self.sink.committed
        return self.store.load(self.run.key, self.run.deadline)

    def record_origin(self, checkpoint: Checkpoint) -> None:
        self.sink.begin()
        self._write_checkpoint(checkpoint)
        self.sink.commit(self.run.deadline)
        self.sink.committed = checkpoint

    def before_page(self) -> None:
        if not self._pages:
            self.sink.begin()

    def add(self, page: ProducedPage) -> None:
        if page.tracker.undeliverable:
            page = self.loop.dead_letter_refused(page)
        self._pages.append(page)
        self._records += page.counters.records_read
        if self._records >= self.max_records:
            self._commit(page.batch.next_cursor, Counters())

    def finish(self, end_cursor: str) -> None:
        gaps = self.loop.pending_gaps()
        if self._pages or self.loop.summary.cursor_reached != end_cursor or gaps.gaps:
            self._commit(end_cursor, gaps)

    def recover(self, exc: BaseException, attempt: int) -> bool:
        """Abort; read again from the last commit when the failure is abortable and attempts and time are left."""
        self.sink.abort(self.run.deadline)
        self._pages, self._records = [], 0
        if isinstance(exc, KafkaException):
            # The client raised where no call of ours translates it (e.g. fenced while adding partitions).
            raise self.sink.translate(exc) from exc
        if isinstance(exc, FatalSinkError):
            return False
        if isinstance(exc, SinkError):
            # A refused batch fails the transaction as _STATE on a later produce or at commit, whichever comes
            # first; its delivery reports tell the real cause, and that every retry would fail the same way.
            refused = self.sink.refused_by_broker()
            if refused:
                raise self.sink.refusal_error(refused) from exc
            if self.run.deadline.expired() or attempt >= MAX_ATTEMPTS:
                return False
            log.warning("transaction aborted (%s); re-reading from committed cursor %s", exc,
                        self.loop.summary.cursor_reached)
            self.run.stats.aborted_transactions += 1
            self.prepare()
            return True
        if isinstance(exc, CheckpointError):
            # A checkpoint write fails when the transaction already has (a record for a missing topic, say):
            # that record's delivery error is the one worth reporting.
            cause = self.sink.delivery_error()
            if cause is not None:
                raise cause from exc
        return False

    def _commit(self, cursor: str, extra: Counters) -> None:
        if not self._pages:
            self.sink.begin()
        checkpoint = self.loop.checkpoint(cursor)
        self._write_checkpoint(checkpoint)
        # A commit that returns means every record of the transaction was delivered.
        self.sink.commit(self.run.deadline)
        self.sink.committed = checkpoint
        counters = extra
        for page in self._pages:
            counters.add(page.counters)
        self._pages, self._records = [], 0
        self.loop.committed(counters, cursor)

    def _write_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.sink.produce_checkpoint(*self.store.record(self.run.key, checkpoint))
