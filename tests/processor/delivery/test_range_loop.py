"""The range loop under the at-least-once strategy, over fakes of SLS and Kafka (fast tier).

Kafka confirms in any order here; what must hold is what the README promises: a checkpoint is saved only for
pages whose every record (or its dead letter) Kafka confirmed, pages commit in order, and the summary counts
exactly what was committed.
"""

from __future__ import annotations

import threading

import pytest
from aliyun.log import LogException

from checkpoints.base import Checkpoint
from common.cursors import cursor_position
from common.errors import BudgetExceededError, DeadLetterToleranceError, SinkError, SourceError
from processor.dead_letter import MAX_ORIGINAL_BYTES
from processor.delivery.at_least_once import MAX_IN_FLIGHT_PAGES, AtLeastOnce
from processor.sls.source import FIRST_PULL_COUNT, TARGET_PAGE_BYTES, page_count
from tests.processor.delivery.delivery_fakes import (
    DLQ,
    KEY,
    TOPIC,
    FakeShard,
    FakeSink,
    RecordingStore,
    cursor_at,
    log_group,
    projected,
    range_loop,
)


def shard_of(groups: int, per_group: int = 10, poison: tuple[int, ...] = ()) -> FakeShard:
    return FakeShard([log_group(g * per_group, per_group, poison) for g in range(groups)])


def records_before(shard: FakeShard, cursor: str) -> set[bytes]:
    """The values of every record of the groups before `cursor` (a log's time is 1_700_000_000 + its seq)."""
    return {projected(log.Time - 1_700_000_000) for g in shard.groups[:cursor_position(cursor)] for log in g.Logs}


@pytest.mark.parametrize("seed", range(5))
def test_every_checkpoint_covers_only_confirmed_pages_whatever_order_kafka_confirms_in(seed):
    shard = shard_of(groups=40)
    sink = FakeSink(seed=seed)
    store = RecordingStore(on_save=lambda: set(sink.values(TOPIC)))
    loop = range_loop(shard, sink, pull_count=3)

    summary = loop.execute(AtLeastOnce(loop, store))

    assert sorted(sink.values(TOPIC)) == sorted(projected(i) for i in range(400))
    assert store.held[KEY] == Checkpoint(cursor_at(40), cursor_at(0))
    cursors = [cp.cursor for cp, _ in store.saves]
    assert cursors == sorted(cursors, key=cursor_position)
    for cp, confirmed in store.saves:
        missing = records_before(shard, cp.cursor) - confirmed
        assert not missing, f"checkpoint {cp.cursor} saved before {len(missing)} of its records were confirmed"
    assert (summary.records_read, summary.produced, summary.log_groups, summary.cursor_reached) == \
        (400, 400, 40, cursor_at(40))


def test_a_record_kafka_refuses_is_dead_lettered_before_its_page_commits():
    shard = shard_of(groups=12)
    too_large = projected(57)
    sink = FakeSink(seed=3, too_large=[too_large])
    store = RecordingStore(on_save=lambda: (set(sink.values(TOPIC)), len(sink.values(DLQ))))
    loop = range_loop(shard, sink, pull_count=2)

    summary = loop.execute(AtLeastOnce(loop, store))

    assert too_large not in sink.values(TOPIC)
    [letter] = sink.values(DLQ)
    assert b"MSG_SIZE_TOO_LARGE" in letter or b"too large" in letter
    for cp, (confirmed, letters) in store.saves:
        owed = records_before(shard, cp.cursor)
        if too_large in owed:
            assert letters == 1, f"checkpoint {cp.cursor} saved before the refused record's dead letter"
        assert owed - {too_large} <= confirmed
    assert (summary.produced, summary.dead_lettered, summary.records_read) == (119, 1, 120)


def test_unprojectable_records_are_dead_lettered_with_the_page_and_a_huge_original_is_truncated():
    huge = "x" * (MAX_ORIGINAL_BYTES * 2)
    group = log_group(0, 5)
    group.Logs[2].Contents[0].Value = huge
    shard = FakeShard([group, log_group(5, 5)])
    sink = FakeSink()
    loop = range_loop(shard, sink)

    summary = loop.execute(AtLeastOnce(loop, RecordingStore()))

    [letter] = sink.values(DLQ)
    assert len(letter) < MAX_ORIGINAL_BYTES + 4096
    assert b"original_truncated" in letter
    assert sorted(sink.values(TOPIC)) == sorted(projected(i) for i in range(10) if i != 2)
    assert (summary.produced, summary.dead_lettered) == (9, 1)


def test_a_page_refused_by_the_tolerance_reaches_no_topic_and_the_checkpoint_stays_before_it():
    shard = shard_of(groups=6, per_group=10, poison=tuple(range(30, 40)))
    sink = FakeSink()
    store = RecordingStore()
    loop = range_loop(shard, sink, pull_count=1, tolerance="page")

    with pytest.raises(DeadLetterToleranceError):
        loop.execute(AtLeastOnce(loop, store))

    assert not sink.values(DLQ)
    assert not {projected(i) for i in range(30, 60)} & set(sink.values(TOPIC))
    saved = store.held[KEY].cursor
    assert cursor_position(saved) <= 3
    assert records_before(shard, saved) <= set(sink.values(TOPIC))


def test_a_delivery_failure_saves_what_was_confirmed_and_the_retry_resends_at_most_the_pages_in_flight():
    shard = shard_of(groups=30)
    failing = FakeSink(seed=1, fail_after=137)
    store = RecordingStore()
    loop = range_loop(shard, failing, pull_count=1)

    with pytest.raises(SinkError):
        loop.execute(AtLeastOnce(loop, store))

    saved = store.held[KEY]
    assert records_before(shard, saved.cursor) <= set(failing.values(TOPIC))
    sink = FakeSink(seed=2)
    retry = range_loop(shard, sink, pull_count=1)
    summary = retry.execute(AtLeastOnce(retry, store))

    assert summary.resumed_from_checkpoint
    assert summary.start_cursor == saved.cursor
    delivered = failing.values(TOPIC) + sink.values(TOPIC)
    assert set(delivered) == {projected(i) for i in range(300)}
    duplicates = len(delivered) - 300
    assert 0 <= duplicates <= (MAX_IN_FLIGHT_PAGES + 1) * 10
    assert store.held[KEY] == Checkpoint(cursor_at(30), cursor_at(0))


def test_a_range_the_checkpoint_proves_delivered_reads_nothing():
    shard = shard_of(groups=5)
    store = RecordingStore(held={KEY: Checkpoint(cursor_at(5), cursor_at(0))})
    sink = FakeSink()
    loop = range_loop(shard, sink)

    summary = loop.execute(AtLeastOnce(loop, store))

    assert summary.already_delivered
    assert not sink.values(TOPIC)
    assert shard.counts_asked == []


def test_a_checkpoint_before_the_range_catches_up_from_there():
    shard = shard_of(groups=10)
    store = RecordingStore(held={KEY: Checkpoint(cursor_at(3), cursor_at(0))})
    sink = FakeSink()
    loop = range_loop(shard, sink, begin=6)

    summary = loop.execute(AtLeastOnce(loop, store))

    assert summary.start_cursor == cursor_at(3)
    assert sorted(sink.values(TOPIC)) == sorted(projected(i) for i in range(30, 100))
    assert store.held[KEY] == Checkpoint(cursor_at(10), cursor_at(0))


def test_a_first_range_records_its_origin_before_reading():
    shard = shard_of(groups=4)
    shard.failures.append(LogException("Unauthorized", "denied", resp_status=401))
    store = RecordingStore()
    loop = range_loop(shard, FakeSink(), begin=2)

    with pytest.raises(SourceError, match="Unauthorized"):
        loop.execute(AtLeastOnce(loop, store))

    assert store.held[KEY] == Checkpoint(cursor_at(2), cursor_at(2))


def test_pages_grow_from_a_few_groups_and_stay_near_the_target_size():
    shard = FakeShard([log_group(g * 10, 10, pad=20_000) for g in range(40)])  # groups of ~200 KB
    sink = FakeSink()
    loop = range_loop(shard, sink, pull_count=1000)

    summary = loop.execute(AtLeastOnce(loop, RecordingStore()))

    assert shard.counts_asked[0] == FIRST_PULL_COUNT
    group_bytes = shard.groups[0].ByteSize()
    assert max(shard.counts_asked) == TARGET_PAGE_BYTES // group_bytes
    assert all(b <= 2 * a for a, b in zip(shard.counts_asked, shard.counts_asked[1:], strict=False))
    assert summary.records_read == 400


@pytest.mark.parametrize(("limit", "largest", "current", "expected"), [
    (1000, 0, 4, 4),                       # nothing learnt from an empty page
    (1000, 1000, 4, 8),                    # small groups: at most double
    (1000, TARGET_PAGE_BYTES // 3, 8, 3),  # large groups: shrink at once
    (5, 10, 4, 5),                         # never over the configured limit
    (1000, TARGET_PAGE_BYTES * 2, 8, 1),   # one group over the target: one at a time
])
def test_page_count(limit, largest, current, expected):
    assert page_count(limit, largest, current) == expected


def test_transient_sls_errors_are_retried_and_counted():
    shard = shard_of(groups=3)
    shard.failures += [LogException("InternalServerError", "boom", resp_status=500) for _ in range(3)]
    sleeps: list[float] = []
    loop = range_loop(shard, FakeSink(), sleep=sleeps.append)

    summary = loop.execute(AtLeastOnce(loop, RecordingStore()))

    assert (summary.records_read, summary.sls_retries, len(sleeps)) == (30, 3, 3)


def test_retrying_stops_before_a_sleep_would_overrun_the_deadline():
    shard = shard_of(groups=3)
    shard.failures += [LogException("InternalServerError", "boom", resp_status=500) for _ in range(1000)]
    loop = range_loop(shard, FakeSink(), timeout=1.0, sleep=lambda s: None)

    with pytest.raises(BudgetExceededError, match="SLS kept failing"):
        loop.execute(AtLeastOnce(loop, RecordingStore()))

    assert 0 < len(shard.failures) < 1000


def test_an_expired_cursor_is_a_reported_gap_and_delivery_goes_on_from_the_oldest_kept_data():
    shard = shard_of(groups=10)
    shard.begin = 4
    sink = FakeSink()
    store = RecordingStore()
    loop = range_loop(shard, sink)

    summary = loop.execute(AtLeastOnce(loop, store))

    assert sorted(sink.values(TOPIC)) == sorted(projected(i) for i in range(40, 100))
    assert [(g["from_cursor"], g["to_cursor"], g["log_groups"]) for g in summary.gaps] == \
        [(cursor_at(0), cursor_at(4), 4)]
    assert store.held[KEY].cursor == cursor_at(10)


def test_a_stuck_pull_ends_at_the_deadline_with_the_confirmed_progress_saved():
    shard = shard_of(groups=6)
    release = threading.Event()
    original = shard.pull_logs

    def pull(*args, **kwargs):
        if shard.counts_asked and len(shard.counts_asked) >= 2:
            release.wait(5)
        return original(*args, **kwargs)

    shard.pull_logs = pull
    sink = FakeSink()
    store = RecordingStore()
    loop = range_loop(shard, sink, timeout=1.0, pull_count=1)

    with pytest.raises(BudgetExceededError, match="waiting for SLS"):
        loop.execute(AtLeastOnce(loop, store))
    release.set()

    saved = store.held[KEY].cursor
    assert cursor_position(saved) <= 2
    assert records_before(shard, saved) <= set(sink.values(TOPIC))


def test_an_error_of_the_prefetching_pull_surfaces_after_the_pages_pulled_before_it():
    shard = shard_of(groups=6)
    shard.failures += [None, None, LogException("Unauthorized", "denied", resp_status=401)]
    sink = FakeSink()
    store = RecordingStore()
    loop = range_loop(shard, sink, pull_count=1)

    with pytest.raises(SourceError, match="Unauthorized"):
        loop.execute(AtLeastOnce(loop, store))

    # Both pages pulled before the failure were produced (confirmed, or dropped unconfirmed with the failure).
    assert len(sink.values(TOPIC)) + sink.abandoned == 20
    assert records_before(shard, store.held[KEY].cursor) <= set(sink.values(TOPIC))
