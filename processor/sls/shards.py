"""A logstore as partitions, in the way of bytewax's partitioned sources: `Logstore.list_parts` names the shards,
`Logstore.build_part` opens a reader of one shard from a resume cursor (the cursor a checkpoint holds). Besides,
the metadata the trigger runner, backfill and lag need: cursors by time, receive times.

Every call goes through the SLS retry policy (`processor.sls.retry.sls_retrying`) within a budget of its own;
anything else becomes a `SourceError` naming the call, so a wrong project or endpoint fails with one clear line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aliyun.log import LogException
from tenacity import Retrying

from common.cursors import cursor_from_position, cursor_position
from common.deadline import Deadline
from common.errors import BudgetExceededError, ConfigError, SourceError
from common.sls_errors import sls_error
from processor.config import SourceConfig
from processor.sls.retry import DeadlineLogClient, sls_retrying
from processor.sls.source import Gap, ShardRangeSource

# A metadata call from the command line has no invocation's deadline: this bounds it, retries included.
METADATA_BUDGET_SECONDS = 60.0


@dataclass(frozen=True)
class Position:
    """A place in every shard, as given on the command line: begin, end, unix seconds or one shard's cursor."""

    kind: Literal["begin", "end", "time", "cursor"]
    value: str | int
    text: str

    def sort_key(self) -> int | None:
        """Comparable without asking SLS when both sides are times or both cursors; else None."""
        if self.kind == "time":
            return int(self.value)
        if self.kind == "cursor":
            return cursor_position(str(self.value))
        return None


BEGIN = Position("begin", "begin", "begin")
END = Position("end", "end", "end")


@dataclass(frozen=True)
class ShardInfo:
    shard: int
    status: str

    @property
    def readonly(self) -> bool:
        """A split or merged parent: it takes no writes, so it is done once read to its end cursor."""
        return self.status.lower() == "readonly"


def select_shards(shards: Sequence[ShardInfo], wanted: Sequence[int] | None) -> list[ShardInfo]:
    """The shards named by `wanted` (None: all), or a ConfigError naming the unknown ones."""
    if wanted is None:
        return list(shards)
    by_id = {s.shard: s for s in shards}
    unknown = sorted(set(wanted) - set(by_id))
    if unknown:
        have = ", ".join(str(s.shard) for s in shards) or "none"
        msg = f"--shards: unknown shard(s) {', '.join(map(str, unknown))}; the logstore has shards {have}"
        raise ConfigError(msg)
    return [by_id[i] for i in sorted(set(wanted))]


class Logstore:
    """One logstore's shards: listed, opened for reading, and asked about; each metadata call, retries included,
    ends within `budget_seconds`."""

    def __init__(self, client: Any, project: str, logstore: str,
                 budget_seconds: float = METADATA_BUDGET_SECONDS) -> None:
        self.client = client
        self.project = project
        self.logstore = logstore
        self.budget_seconds = budget_seconds

    def list_parts(self) -> list[ShardInfo]:
        """Every shard, readonly parents included, in id order."""
        resp = self._call("ListShards", "list_shards", self.project, self.logstore)
        infos = [ShardInfo(int(s["shardID"]), str(s.get("status", "readwrite"))) for s in resp.get_shards_info()]
        return sorted(infos, key=lambda s: s.shard)

    def build_part(self, shard: int, resume: str, end: str, config: SourceConfig, retrying: Retrying,
                   on_gap: Callable[[Gap], None], deadline: Deadline) -> ShardRangeSource:
        """A reader of `shard` from `resume` (a checkpoint's cursor, or the range's begin) to `end`.

        Its pages end by `deadline`; `self.client` should be one whose requests do too (`DeadlineLogClient`).
        """
        return ShardRangeSource(self.client, self.project, self.logstore, shard, resume, end, config, retrying,
                                on_gap, deadline)

    def _call(self, what: str, method: str, *args: Any) -> Any:
        deadline = Deadline.after(self.budget_seconds)
        # The SDK's own retries of a hung request would take 10 x (its timeout + 1 s): bound every request.
        client = DeadlineLogClient(self.client, deadline)
        try:
            return sls_retrying(deadline)(getattr(client, method), *args)
        except BudgetExceededError as exc:
            msg = f"SLS {what} for {self.project}/{self.logstore} got no answer within {self.budget_seconds:g}s: {exc}"
            raise SourceError(msg) from exc
        except LogException as exc:
            doing = f"on {what} for {self.project}/{self.logstore}"
            raise sls_error(doing, exc, SourceError) from exc

    def cursor(self, shard: int, at: str | int) -> str:
        """GetCursor: `at` is "begin", "end" or unix seconds (the first log group received at or after it)."""
        resp = self._call("GetCursor", "get_cursor", self.project, self.logstore, shard, at)
        return str(resp.get_cursor()).strip()

    def group_time(self, shard: int, cursor: str) -> int:
        """Receive time (unix seconds) of the log group at `cursor`."""
        resp = self._call("GetCursorTime", "get_cursor_time", self.project, self.logstore, shard, cursor)
        return int(resp.get_cursor_time())

    def last_time_before(self, shard: int, cursor: str) -> int:
        """Receive time of the last log group before `cursor` (the caller knows there is one)."""
        return self.group_time(shard, cursor_from_position(cursor_position(cursor) - 1))

    def resolve(self, shard: int, position: Position, flag: str) -> str:
        """The cursor `position` denotes in `shard`; a given cursor must lie in the shard's retained range."""
        if position.kind in ("begin", "end"):
            return self.cursor(shard, position.kind)
        if position.kind == "time":
            return self.cursor(shard, int(position.value))
        cursor = str(position.value)
        begin, end = self.cursor(shard, "begin"), self.cursor(shard, "end")
        if not cursor_position(begin) <= cursor_position(cursor) <= cursor_position(end):
            msg = (f"{flag} cursor {cursor} is not in shard {shard}'s retained range [{begin}, {end}]: it is "
                   "another shard's cursor, or its data expired")
            raise ConfigError(msg)
        return cursor
