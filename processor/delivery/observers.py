"""The per-batch hook: code that needs each page's projected records plugs in here, not into the loop.

An observer sees every page after its records were produced, with their event times (`__time__`) and where
they came from, and may produce records of its own through `emit`. Those go through the page's delivery
tracker: at-least-once, the page's checkpoint waits for them too; exactly-once, they join the page's
transaction, so a retried range replaces what an aborted attempt emitted instead of adding to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Protocol

from processor.dead_letter import Provenance
from processor.projection import Columns, Rejected

_TIME = attrgetter("Time")


@dataclass(frozen=True, slots=True)
class ProjectedGroup:
    """One log group's good records, in log order; `event_times()` gives the `__time__` of each.

    `columns` holds the same records' values by field, and their times, when the projection built them a column
    at a time (None otherwise), for observers that read fields: cheaper than parsing `records` again.
    """

    where: Provenance
    records: Sequence[tuple[bytes | None, bytes]]
    group: Any
    rejected: Sequence[Rejected]
    columns: Columns | None = None

    def event_times(self) -> list[int]:
        """From the columns, or computed when asked: an observer that needs no times pays nothing."""
        if self.columns is not None:
            return self.columns.times
        times = list(map(_TIME, self.group.Logs))
        if self.rejected:
            skip = {r.index for r in self.rejected}
            times = [t for i, t in enumerate(times) if i not in skip]
        return times


@dataclass(frozen=True, slots=True)
class ProjectedPage:
    """One page of a shard: its groups' projected records and the cursors around it."""

    shard: int
    cursor: str
    next_cursor: str
    groups: Sequence[ProjectedGroup]


class Emit(Protocol):
    def __call__(self, topic: str, key: bytes | None, value: bytes) -> None: ...


class BatchObserver(Protocol):
    """Called once per page, in order, from the loop's thread; an exception fails the run like a sink error."""

    def on_batch(self, page: ProjectedPage, emit: Emit) -> None: ...
