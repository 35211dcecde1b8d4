"""The checkpoint contract: what a stored cursor proves, and how two checkpoints of one shard combine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from common.cursors import cursor_position
from common.errors import CheckpointError


@dataclass(frozen=True, order=True)
class CheckpointKey:
    """Identifies one shard's progress; `scope` separates independent readers (e.g. a backfill job id)."""

    project: str
    logstore: str
    shard: int
    scope: str = ""

    def __str__(self) -> str:
        base = f"{self.project}/{self.logstore}/{self.shard}"
        return f"{base}/{self.scope}" if self.scope else base


def position(cursor: str) -> int:
    """The position behind a stored cursor: cursors of one shard order by it."""
    return cursor_position(cursor, "checkpoint cursor", CheckpointError)


@dataclass(frozen=True)
class Checkpoint:
    """Everything in [origin, cursor) of the shard was delivered, without a hole.

    `cursor` is the next cursor to read. `origin` is where that unbroken stretch starts: the begin cursor of the
    first range that was checkpointed (recorded before anything of it is read), so a later range that starts
    at or after it and ends at or before `cursor` is *proven* delivered. `None` means the store cannot keep an
    origin (an SLS consumer group holds one cursor per shard): the stretch then starts at the shard's first
    recorded range, which every instance sees since such a store is shared.
    """

    cursor: str
    origin: str | None = None

    def covers(self, begin: str, end: str) -> bool:
        """Whether [begin, end) lies inside the proven stretch."""
        start_ok = self.origin is None or position(self.origin) <= position(begin)
        return start_ok and position(self.cursor) >= position(end)


def merge(current: Checkpoint | None, new: Checkpoint) -> Checkpoint:
    """What a store keeps when `new` is saved over `current`: checkpoints only ever grow.

    Two stretches that touch or overlap join into one. A stretch behind the stored one, or one that would
    leave a hole between them, does not replace it: an older cursor never overwrites a newer one, and a
    cursor never jumps over a stretch that was not delivered.
    """
    if current is None:
        return new
    cur_end, new_end = position(current.cursor), position(new.cursor)
    cur_origin = None if current.origin is None else position(current.origin)
    new_origin = None if new.origin is None else position(new.origin)
    if new_origin is not None and new_origin > cur_end:
        return current  # a hole between the stretches: the stored cursor must not jump over it
    if cur_origin is not None and new_end < cur_origin:
        return current  # wholly before the stored stretch, not touching it: nothing it proves joins
    cursor = new.cursor if new_end > cur_end else current.cursor
    # No origin stands for "the shard's first recorded range", which lies before any other.
    if cur_origin is None or new_origin is None:
        origin = None
    else:
        origin = new.origin if new_origin < cur_origin else current.origin
    return Checkpoint(cursor, origin)


class CheckpointReader(Protocol):
    def load(self, key: CheckpointKey) -> Checkpoint | None: ...


class CheckpointStore(CheckpointReader, Protocol):
    """Keeps one `Checkpoint` per key.

    `save` is called only after Kafka confirmed every record before the cursor, so a crash after `save` loses
    nothing and a crash before it re-sends at most the batches since the previous `save`. A store that other
    writers may share applies `merge` against what it holds, so a slow instance never moves it backwards, and
    returns what it now holds.
    """

    def save(self, key: CheckpointKey, checkpoint: Checkpoint) -> Checkpoint: ...
