"""Logstore metadata the trigger runner, backfill and lag need: shards, cursors by time, receive times.

Every call goes through one small retry policy (transient SLS errors only); anything else becomes a
`SourceError` naming the call, so a wrong project or endpoint fails with one clear line.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aliyun.log import LogException
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter

from processor.deadline import Deadline
from processor.errors import BudgetExceededError, ConfigError, SourceError
from processor.event import cursor_position
from processor.retry import DeadlineLogClient, is_retriable_sls_error, name_resolution_error


def cursor_from_position(position: int) -> str:
    """The cursor of the log group at `position`: SLS cursors are base64 of the decimal position.

    The SDK relies on the same encoding (`LogClient.get_previous_cursor_time` steps back by one); we use it
    only for positions between two cursors SLS handed out, to split a range into sub-ranges.
    """
    return base64.b64encode(str(position).encode()).decode()


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
    """Metadata calls against one logstore; each, retries included, ends within `budget_seconds`."""

    def __init__(self, client: Any, project: str, logstore: str, budget_seconds: float = 60.0) -> None:
        self.client = client
        self.project = project
        self.logstore = logstore
        self.budget_seconds = budget_seconds

    def _call(self, what: str, method: str, *args: Any) -> Any:
        deadline = Deadline.after(self.budget_seconds)

        def out_of_time(state: RetryCallState) -> bool:
            return deadline.remaining() <= state.upcoming_sleep

        retrying = Retrying(retry=retry_if_exception(is_retriable_sls_error),
                            wait=wait_exponential_jitter(multiplier=0.2, max=5.0), stop=out_of_time, reraise=True)
        # The SDK's own retries of a hung request would take 10 x (its timeout + 1 s): bound every request.
        client = DeadlineLogClient(self.client, deadline)
        try:
            return retrying(getattr(client, method), *args)
        except BudgetExceededError as exc:
            msg = f"SLS {what} for {self.project}/{self.logstore} got no answer within {self.budget_seconds:g}s: {exc}"
            raise SourceError(msg) from exc
        except LogException as exc:
            msg = (f"SLS {exc.get_error_code()} on {what} for {self.project}/{self.logstore}: "
                   f"{exc.get_error_message()}")
            doing = f"on {what} for {self.project}/{self.logstore}"
            raise name_resolution_error(exc, doing) or SourceError(msg) from exc

    def shards(self) -> list[ShardInfo]:
        """Every shard, readonly parents included, in id order."""
        resp = self._call("ListShards", "list_shards", self.project, self.logstore)
        infos = [ShardInfo(int(s["shardID"]), str(s.get("status", "readwrite"))) for s in resp.get_shards_info()]
        return sorted(infos, key=lambda s: s.shard)

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
