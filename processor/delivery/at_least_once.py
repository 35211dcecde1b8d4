"""At-least-once commits: a page's next cursor is saved once Kafka confirmed it and every page before it.

Pages overlap in the producer (no flush per record or per page); up to `MAX_IN_FLIGHT_PAGES` are unconfirmed at
a time, which bounds memory and what a failure re-sends. Records the broker refuses for good are dead-lettered
before their page counts as confirmed. A failure saves what Kafka confirmed when the budget ran out, drops
everything unconfirmed and fails the run: the retry resumes at the saved cursor and re-sends at most the pages
that were in flight.
"""

from __future__ import annotations

from collections import deque

from checkpoints.base import Checkpoint, CheckpointStore
from common.errors import BudgetExceededError
from processor.delivery.loop import ProducedPage, RangeLoop
from processor.delivery.summary import Counters

MAX_IN_FLIGHT_PAGES = 4


class AtLeastOnce:
    """Commit strategy over any `CheckpointStore`."""

    def __init__(self, loop: RangeLoop, store: CheckpointStore) -> None:
        self.loop = loop
        self.run = loop.run
        self.store = store
        self._in_flight: deque[ProducedPage] = deque()

    def prepare(self) -> None:
        """Nothing to set up: the instance's idempotent producer is shared by its invocations."""

    def load(self) -> Checkpoint | None:
        return self.store.load(self.run.key)

    def record_origin(self, checkpoint: Checkpoint) -> None:
        self.store.save(self.run.key, checkpoint)

    def before_page(self) -> None:
        """Nothing to open: pages overlap in the shared producer."""

    def add(self, page: ProducedPage) -> None:
        self._in_flight.append(page)
        self._settle(block=len(self._in_flight) >= MAX_IN_FLIGHT_PAGES)

    def finish(self, end_cursor: str) -> None:
        while self._in_flight:
            self._settle(block=True)
        gaps = self.loop.pending_gaps()
        if self.loop.summary.cursor_reached != end_cursor or gaps.gaps:
            self._save(gaps, end_cursor)

    def recover(self, exc: BaseException, attempt: int) -> bool:
        try:
            if isinstance(exc, BudgetExceededError):
                # What Kafka confirmed while the next page was awaited is progress the retry need not repeat.
                self.run.sink.poll()
                self._settle(block=False)
        finally:
            self.run.sink.abandon()
        return False

    def _settle(self, block: bool) -> None:
        """Commit every confirmed page at the head of the queue; with `block`, wait for the head first."""
        sink, deadline = self.run.sink, self.run.deadline
        while self._in_flight:
            head = self._in_flight[0]
            if block:
                sink.wait(head.tracker, deadline)
            elif not head.tracker.done:
                return
            if head.tracker.error is not None:
                sink.wait(head.tracker, deadline)  # raises the page's delivery error
            if head.tracker.undeliverable:
                self._in_flight[0] = self.loop.dead_letter_refused(head)
                continue
            self._in_flight.popleft()
            self._save(head.counters, head.batch.next_cursor)
            block = False

    def _save(self, counters: Counters, cursor: str) -> None:
        self.store.save(self.run.key, self.loop.checkpoint(cursor))
        self.loop.committed(counters, cursor)
