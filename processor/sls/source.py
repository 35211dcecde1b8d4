"""Pull one shard's cursor range from SLS in pages, each page a `Batch` that knows where to resume after it.

A little over 250 lines: the page sizing, the prefetch thread and the expired-cursor policy act on the same
pull loop.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aliyun.log import LogException
from tenacity import Retrying

from common.cursors import cursor_position
from common.deadline import Deadline
from common.errors import BudgetExceededError, CursorExpiredError, SourceError
from common.sls_errors import sls_error
from processor.config import SourceConfig
from processor.sls.retry import PullTooLargeError

log = logging.getLogger(__name__)


class PullResponse(Protocol):
    """The part of the SDK's PullLogResponse we use."""

    loggroup_list: Any

    def get_next_cursor(self) -> str: ...
    def get_loggroup_count(self) -> int: ...
    def get_raw_size(self) -> int: ...


class CursorResponse(Protocol):
    def get_cursor(self) -> str: ...


class SlsClient(Protocol):
    """The part of the SDK's LogClient the source calls; unit tests may fake exactly this."""

    def pull_logs(self, project_name: str, logstore_name: str, shard_id: int, cursor: str, count: int | None = None,
                  end_cursor: str | None = None, compress: bool | None = None,
                  accept_compress_type: str | None = None) -> PullResponse: ...
    def get_begin_cursor(self, project_name: str, logstore_name: str, shard_id: int) -> CursorResponse: ...


@dataclass(frozen=True, slots=True)
class Batch:
    """Log groups pulled from `cursor`.

    `next_cursor` is the cursor of the first log group *not* in this batch: saving it as the checkpoint means
    "everything before it is delivered", and reading resumes exactly there.
    """

    cursor: str
    next_cursor: str
    groups: Sequence[Any]
    raw_size: int



@dataclass(frozen=True)
class Gap:
    """Data the source could not read because SLS no longer keeps it."""

    shard: int
    from_cursor: str
    to_cursor: str
    log_groups: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "from_cursor": self.from_cursor, "to_cursor": self.to_cursor,
                "log_groups": self.log_groups, "reason": self.reason}


# Uncompressed bytes a page aims at: `pull_count` is lowered to fit, so a batch (and the records it puts in
# flight) stays a few MB whatever the group sizes; a pull's own overhead is ~1 ms, small against ~13k records.
TARGET_PAGE_BYTES = 2 << 20
# A PullLogs response over this is refused before its body is read (`retry.DeadlineLogClient`) and pulled again
# in fewer groups: after tiny groups have let the count grow to 1,000, one response could hold 1,000 groups of
# up to 5 MB each (SLS's limit), which the SDK holds twice while decompressing.
MAX_PAGE_BYTES = 4 * TARGET_PAGE_BYTES
FIRST_PULL_COUNT = 4
# Pages pulled ahead of the one being produced: the SDK's socket reads and lz4 release the GIL, so the next
# pull overlaps producing the current page.
PREFETCH_PAGES = 1


class ShardRangeSource:
    """Reads [begin, end) of one shard, starting at `start` (a checkpoint inside the range, or `begin`): one part
    of the logstore, as `shards.Logstore.build_part` opens it. Each `Batch`'s `next_cursor` is where a reader
    built again resumes.

    SLS errors are handled by kind: transient ones (5xx, throttling, dropped connections) are retried by the
    `retrying` policy; auth, not-found and parameter errors raise `SourceError` at once; an expired cursor
    follows `config.invalid_cursor_policy` and is reported through `on_gap`, never skipped silently. Waiting
    for a page ends at `deadline` (the client's requests should end by it too: `retry.DeadlineLogClient`).
    """

    def __init__(self, client: SlsClient, project: str, logstore: str, shard: int, start: str, end: str,
                 config: SourceConfig, retrying: Retrying, on_gap: Callable[[Gap], None],
                 deadline: Deadline) -> None:
        self.client = client
        self.project = project
        self.logstore = logstore
        self.shard = shard
        self.start = start
        self.end = end
        self.config = config
        self.retrying = retrying
        self.on_gap = on_gap
        self.deadline = deadline
        if config.compression == "none":
            self._compress: dict[str, Any] = {"compress": False}
        else:
            self._compress = {"accept_compress_type": config.compression}

    def __iter__(self) -> Generator[Batch, None, None]:
        """The pages of the range; the next one is pulled (and parsed) in a thread while the caller works."""
        return _prefetch(self.pages(), f"{self.project}/{self.logstore} shard {self.shard}", self.deadline)

    def pages(self) -> Iterator[Batch]:
        """The pages of the range, each pulled when asked for, in the calling thread."""
        cursor = self.start
        # Start small: until a page shows how large the groups are, a full `pull_count` could be huge.
        count = min(self.config.pull_count, FIRST_PULL_COUNT)
        # Pull at least once, even for an empty range: SLS then vouches for the shard and the cursor.
        while True:
            cursor, count, resp = self._pull(cursor, count)
            if resp is None:
                return
            next_cursor = resp.get_next_cursor()
            groups = resp.get_loggroup_count()
            if groups == 0 and next_cursor == cursor:
                if cursor != self.end:
                    # Ending here would report the range delivered while [cursor, end) was never read.
                    msg = (f"SLS returned no data at cursor {cursor} of {self.project}/{self.logstore} shard "
                           f"{self.shard}, before the range's end cursor {self.end}")
                    raise SourceError(msg)
                return
            batch = Batch(cursor, next_cursor, resp.loggroup_list.LogGroups, resp.get_raw_size())
            del resp
            yield batch
            if next_cursor in (cursor, self.end):
                return
            cursor = next_cursor
            count = page_count(self.config.pull_count, largest_group_bytes(batch.groups), count)
            # The caller is done with this page once it asks for the next: do not hold it during that pull.
            del batch

    def _pull(self, cursor: str, count: int) -> tuple[str, int, PullResponse | None]:
        """Pull up to `count` groups from `cursor`; returns the cursor actually read from (it moves when data
        expired) and the count asked for (lowered when the response was too large)."""
        while True:
            try:
                resp = self.retrying(self.client.pull_logs, self.project, self.logstore, self.shard, cursor,
                                     count=count, end_cursor=self.end, **self._compress)
                return cursor, count, resp
            except PullTooLargeError as exc:
                log.info("%s/%s shard %d at cursor %s: %s", self.project, self.logstore, self.shard, cursor, exc)
                count = max(1, exc.groups * TARGET_PAGE_BYTES // exc.raw_size)
                continue
            except LogException as exc:
                if exc.get_error_code() != "InvalidCursor":
                    raise self._error(exc) from exc
                invalid = exc
            # Recovered outside the except block, so an error while recovering is not chained to this one.
            moved = self._recover_invalid_cursor(cursor, invalid)
            if moved is None:
                return cursor, count, None
            cursor = moved

    def _error(self, exc: LogException) -> SourceError:
        return sls_error(f"reading {self.project}/{self.logstore} shard {self.shard}", exc, SourceError)

    def _recover_invalid_cursor(self, cursor: str, exc: LogException) -> str | None:
        """Apply the invalid-cursor policy; returns where to continue, or None to end the range here."""
        try:
            begin = self.retrying(self.client.get_begin_cursor, self.project, self.logstore, self.shard).get_cursor()
        except LogException as failed:
            raise self._error(failed) from failed
        pos, begin_pos, end_pos = cursor_position(cursor), cursor_position(begin), cursor_position(self.end)
        if pos >= begin_pos:
            msg = (f"SLS rejected cursor {cursor} of {self.project}/{self.logstore} shard {self.shard} as invalid "
                   f"although it is not older than the shard's begin cursor {begin}: {exc.get_error_message()}")
            raise SourceError(msg) from exc
        policy = self.config.invalid_cursor_policy
        if policy == "fail":
            msg = (f"cursor {cursor} of {self.project}/{self.logstore} shard {self.shard} points at expired data "
                   f"(oldest kept: {begin}); SLS_INVALID_CURSOR_POLICY=fail stops here. Set it to 'begin' to go on "
                   "from the oldest data still kept")
            raise CursorExpiredError(msg) from exc
        resume = begin if policy == "begin" and begin_pos < end_pos else self.end
        lost = cursor_position(resume) - pos
        gap = Gap(self.shard, cursor, resume, lost,
                  f"data expired (retention) before it was read; SLS_INVALID_CURSOR_POLICY={policy}")
        log.error("DATA GAP in %s/%s shard %d: %d log group(s) in [%s, %s) could not be read: %s", self.project,
                  self.logstore, self.shard, lost, cursor, resume, gap.reason)
        self.on_gap(gap)
        return None if resume == self.end else resume


def page_count(limit: int, largest_group: int, current: int) -> int:
    """Log groups for the next pull: as many groups as large as the last page's largest as fit TARGET_PAGE_BYTES.

    The largest, not the mean: one large group among many small ones would otherwise let the next page hold
    many large ones. At most double the last count: a page of a few small groups says little about the next
    ones (group sizes run from a few logs to 4,096, up to 5 MB). A page that went over shrinks at once.
    """
    if largest_group <= 0:
        return current
    return max(1, min(limit, 2 * current, TARGET_PAGE_BYTES // largest_group))


def largest_group_bytes(groups: Sequence[Any]) -> int:
    """Serialized size of the largest log group of a page (upb computes it in C: ~1 ms for a 2 MB page)."""
    return max((group.ByteSize() for group in groups), default=0)


_END = object()


def _prefetch(pages: Iterator[Batch], name: str, deadline: Deadline) -> Generator[Batch, None, None]:
    """Run `pages` in a daemon thread, PREFETCH_PAGES ahead; its errors are raised here, in order.

    Waiting for a page ends at `deadline` with `BudgetExceededError`, whatever the thread is stuck in. When the
    caller stops early (failure, time budget), the thread stops after the pull it is in; it is not waited for.
    """
    handoff: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH_PAGES)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pull_ahead() -> None:
        try:
            for page in pages:
                if not put(page):
                    return
                del page  # not held while the next page is pulled
        except BaseException as exc:  # handed to the caller, which raises it
            put(_Failed(exc))
            return
        put(_END)

    threading.Thread(target=pull_ahead, name=f"sls-pull {name}", daemon=True).start()
    try:
        while True:
            try:
                item = handoff.get(timeout=deadline.remaining())
            except queue.Empty:
                msg = f"time budget spent waiting for SLS to return the next page of {name}"
                raise BudgetExceededError(msg) from None
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException
