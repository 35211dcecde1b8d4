"""The checkpoint contract shared by every store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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


class CheckpointStore(Protocol):
    """Keeps the *next* cursor to read: everything before it has been delivered.

    `save` is called only after Kafka confirmed every record before the cursor, so a crash after `save` loses
    nothing and a crash before it re-sends at most the batches since the previous `save`.
    """

    def load(self, key: CheckpointKey) -> str | None: ...

    def save(self, key: CheckpointKey, cursor: str) -> None: ...
