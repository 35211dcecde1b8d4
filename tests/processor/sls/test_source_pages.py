"""Page sizing of the source: pages bounded in bytes by the largest group seen, shrinking at once (pure logic)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from common.cursors import cursor_position
from common.deadline import Deadline
from processor.config import SourceConfig
from processor.sls.retry import PullTooLargeError, RetryStats, sls_retrying
from processor.sls.shards import cursor_from_position
from processor.sls.source import MAX_PAGE_BYTES, TARGET_PAGE_BYTES, ShardRangeSource, page_count

MB = 1 << 20


def test_the_next_page_is_sized_by_the_largest_group_not_the_mean():
    # 99 groups of 1 KB and one of 1 MB: by the mean (~11 KB) the next page could hold 190 groups of 1 MB.
    assert page_count(1000, largest_group=1 * MB, current=100) == TARGET_PAGE_BYTES // MB


def test_a_page_that_went_over_shrinks_at_once_and_small_groups_grow_at_most_double():
    assert page_count(1000, largest_group=5 * MB, current=1000) == 1
    assert page_count(1000, largest_group=100, current=16) == 32
    assert page_count(20, largest_group=100, current=16) == 20


@dataclass
class _Group:
    size: int

    def ByteSize(self) -> int:
        return self.size


class _FakeSls:
    """A shard of groups of the given sizes; refuses a pull over `limit` bytes as `DeadlineLogClient` does."""

    def __init__(self, sizes: list[int], limit: int) -> None:
        self.sizes, self.limit = sizes, limit
        self.counts: list[int] = []

    def pull_logs(self, project, logstore, shard, cursor, count=None, end_cursor=None, **_):
        self.counts.append(count)
        first = cursor_position(cursor)
        page = self.sizes[first:first + count]
        if len(page) > 1 and sum(page) > self.limit:
            raise PullTooLargeError(len(page), sum(page), self.limit)
        return SimpleNamespace(loggroup_list=SimpleNamespace(LogGroups=[_Group(s) for s in page]),
                               get_next_cursor=lambda: cursor_from_position(first + len(page)),
                               get_loggroup_count=lambda: len(page), get_raw_size=lambda: sum(page))


def test_tiny_groups_then_5mb_groups_never_make_a_page_over_the_limit():
    sizes = [100] * 1100 + [5 * MB] * 40 + [100] * 300
    sls = _FakeSls(sizes, MAX_PAGE_BYTES)
    deadline = Deadline.after(30)
    source = ShardRangeSource(sls, "p", "l", 0, cursor_from_position(0), cursor_from_position(len(sizes)),
                              SourceConfig(pull_count=1000), sls_retrying(deadline, RetryStats()), print, deadline)

    pages = list(source.pages())

    assert [g.size for b in pages for g in b.groups] == sizes
    assert max(b.raw_size for b in pages if len(b.groups) > 1) <= MAX_PAGE_BYTES
    assert max(sls.counts) == 1000  # tiny groups still get full pages
    assert max(sum(g.size == 5 * MB for g in b.groups) for b in pages) == 1
