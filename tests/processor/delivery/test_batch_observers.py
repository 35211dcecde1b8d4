"""The per-batch observer hook over fakes of SLS and Kafka (fast tier): what an observer sees and what it emits."""

from __future__ import annotations

from common.cursors import cursor_position
from processor.delivery.at_least_once import AtLeastOnce
from processor.delivery.observers import Emit, ProjectedPage
from tests.processor.delivery.delivery_fakes import (
    TOPIC,
    FakeShard,
    FakeSink,
    RecordingStore,
    log_group,
    projected,
    range_loop,
)


class CountPerPage:
    """Emits one record per page: the number of good records and their earliest event time."""

    def __init__(self) -> None:
        self.pages: list[ProjectedPage] = []

    def on_batch(self, page: ProjectedPage, emit: Emit) -> None:
        self.pages.append(page)
        times = [t for group in page.groups for t in group.event_times()]
        emit("kpi", None, f"{len(times)}:{min(times)}".encode())


class ConfirmOnWait(FakeSink):
    """Kafka that confirms a record only when its page is waited for: nothing lands by chance."""

    def poll(self) -> None:
        pass


def test_observers_see_each_page_in_order_with_event_times_and_emit_under_its_checkpoint():
    shard = FakeShard([log_group(g * 10, 10, poison=(g * 10 + 3,)) for g in range(6)])
    sink = ConfirmOnWait()
    store = RecordingStore(on_save=lambda: len(sink.values("kpi")))
    loop = range_loop(shard, sink, pull_count=2)
    observer = CountPerPage()
    loop.run.observers = [observer]

    summary = loop.execute(AtLeastOnce(loop, store))

    # Three pages of two groups, in order and back to back; each group's poison log is rejected.
    pages = observer.pages
    assert len(pages) == 3
    assert pages[0].cursor == loop.run.event.begin_cursor
    assert [p.next_cursor for p in pages] == [*(p.cursor for p in pages[1:]), loop.run.event.end_cursor]
    first = observer.pages[0].groups[0]
    assert len(first.records) == 9
    assert first.event_times() == [1_700_000_000 + i for i in range(10) if i != 3]
    assert sorted(sink.values("kpi")) == sorted(f"18:{1_700_000_000 + p * 20}".encode() for p in range(3))
    # A checkpoint is saved only once what the observer emitted for every page before it was confirmed too.
    for checkpoint, emitted in store.saves:
        covered = sum(cursor_position(p.next_cursor) <= cursor_position(checkpoint.cursor) for p in pages)
        assert emitted >= covered, f"checkpoint {checkpoint.cursor} saved before its pages' emitted records"
    assert store.saves[-1][1] == 3
    assert summary.produced == 54
    assert projected(3) not in sink.values(TOPIC)
