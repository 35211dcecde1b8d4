"""The logstore as partitions: a part opened at a resume cursor reads from exactly there (pure logic, a fake SDK)."""

from __future__ import annotations

from types import SimpleNamespace

from common.cursors import cursor_from_position, cursor_position
from common.deadline import Deadline
from processor.config import SourceConfig
from processor.sls.retry import RetryStats, sls_retrying
from processor.sls.shards import Logstore


class _Shard:
    """One shard of `groups` one-log groups, numbered by position."""

    def __init__(self, groups: int) -> None:
        self.groups = groups
        self.pulled_from: list[int] = []

    def pull_logs(self, project, logstore, shard, cursor, count=None, end_cursor=None, **_):
        first = cursor_position(cursor)
        last = min(first + count, cursor_position(end_cursor), self.groups)
        self.pulled_from.append(first)
        page = [SimpleNamespace(position=p, ByteSize=lambda: 100) for p in range(first, last)]
        return SimpleNamespace(loggroup_list=SimpleNamespace(LogGroups=page),
                               get_next_cursor=lambda: cursor_from_position(last),
                               get_loggroup_count=lambda: len(page), get_raw_size=lambda: 100 * len(page))


def test_a_part_built_at_a_resume_cursor_reads_from_it_to_the_end_and_each_page_says_where_to_resume():
    shard = _Shard(50)
    deadline = Deadline.after(30)
    part = Logstore(shard, "p", "l").build_part(3, cursor_from_position(17), cursor_from_position(40),
                                                SourceConfig(pull_count=10), sls_retrying(deadline, RetryStats()),
                                                print, deadline)

    pages = list(part)

    assert part.shard == 3
    assert [g.position for page in pages for g in page.groups] == list(range(17, 40))
    assert shard.pulled_from[0] == 17
    assert [page.cursor for page in pages[1:]] == [page.next_cursor for page in pages[:-1]]
    assert pages[-1].next_cursor == cursor_from_position(40)
