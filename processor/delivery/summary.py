"""What a run reports: a `Summary` per invocation, built from `Counters` that each commit merges in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Counters:
    """What a stretch of pages read and delivered. A commit merges its pages' counters into the summary, so an
    aborted attempt's pages never show there."""

    log_groups: int = 0
    records_read: int = 0
    produced: int = 0
    dead_lettered: int = 0
    bytes_read: int = 0
    bytes_produced: int = 0
    batches: int = 0
    gaps: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: Counters) -> None:
        for f in fields(Counters):
            if f.name == "gaps":
                self.gaps.extend(other.gaps)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Summary(Counters):
    """What one invocation did; `as_dict` is the handler's JSON-serialisable return value."""

    project: str = ""
    logstore: str = ""
    shard: int = 0
    begin_cursor: str = ""
    end_cursor: str = ""
    start_cursor: str = ""
    cursor_reached: str = ""
    resumed_from_checkpoint: bool = False
    already_delivered: bool = False
    sls_retries: int = 0
    aborted_transactions: int = 0
    duration_seconds: float = 0.0
    lag_seconds: float | None = None
    records_per_second: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
