"""Cursor semantics through the SDK: begin/end/time cursors, ranges, retention, split and merge."""

from __future__ import annotations

import base64

import pytest
import requests
from aliyun.log import LogClient, LogException, LogItem, PutLogsRequest

from devstack.sls_emulator import EmulatorServer
from tests.sls_fixtures import ManualClock, pull_range

LOGSTORE = "cursors"
MIDDLE_KEY = "8" + "0" * 31


def _decimal(cursor: str) -> int:
    return int(base64.b64decode(cursor))


def _cursor(position: int) -> str:
    return base64.b64encode(str(position).encode()).decode()


def _put(client: LogClient, project: str, groups: int, hash_key: str | None = None, logstore: str = LOGSTORE):
    for index in range(groups):
        items = [LogItem(1700000000, [("i", str(index))])]
        client.put_logs(PutLogsRequest(project, logstore, "", "src", items, hashKey=hash_key))


def _begin_end(client: LogClient, project: str, shard: int, logstore: str = LOGSTORE) -> tuple[str, str]:
    return (
        client.get_begin_cursor(project, logstore, shard).get_cursor(),
        client.get_end_cursor(project, logstore, shard).get_cursor(),
    )


def _error(call, *args, **kwargs) -> LogException:
    with pytest.raises(LogException) as caught:
        call(*args, **kwargs)
    return caught.value


@pytest.fixture
def one_shard(sls_client: LogClient, sls_project: str) -> str:
    sls_client.create_logstore(sls_project, LOGSTORE, shard_count=1)
    return sls_project


def test_emulator_cursor_is_base64_decimal_advancing_by_one_per_group(sls_client: LogClient, one_shard: str):
    begin, end = _begin_end(sls_client, one_shard, 0)
    assert begin == end
    assert _decimal(begin) > 10**18  # looks like a nanosecond timestamp, as real cursors do
    _put(sls_client, one_shard, 3)
    begin, end = _begin_end(sls_client, one_shard, 0)
    assert _decimal(end) - _decimal(begin) == 3
    nexts = [
        sls_client.pull_logs(one_shard, LOGSTORE, 0, _cursor(_decimal(begin) + i), 1).get_next_cursor()
        for i in range(3)
    ]
    assert [_decimal(c) - _decimal(begin) for c in nexts] == [1, 2, 3]


def test_emulator_cursors_of_different_shards_differ_and_are_not_interchangeable(
    sls_client: LogClient, sls_project: str
):
    sls_client.create_logstore(sls_project, LOGSTORE, shard_count=2)
    _put(sls_client, sls_project, 4)
    begin0, _ = _begin_end(sls_client, sls_project, 0)
    begin1, _ = _begin_end(sls_client, sls_project, 1)
    assert begin0 != begin1
    assert _error(sls_client.pull_logs, sls_project, LOGSTORE, 1, begin0, 10).get_error_code() == "InvalidCursor"


def test_emulator_get_cursor_by_time_finds_first_group_received_at_or_after_it(
    sls_client: LogClient, one_shard: str, sls_clock: ManualClock
):
    t0 = int(sls_clock.now)
    _put(sls_client, one_shard, 1)  # position 0 at t0
    sls_clock.advance(10)
    _put(sls_client, one_shard, 2)  # positions 1, 2 at t0 + 10
    sls_clock.advance(10)
    _put(sls_client, one_shard, 1)  # position 3 at t0 + 20
    begin, end = _begin_end(sls_client, one_shard, 0)

    def at(when: int) -> int:
        return _decimal(sls_client.get_cursor(one_shard, LOGSTORE, 0, when).get_cursor()) - _decimal(begin)

    assert [at(t0 - 100), at(t0), at(t0 + 1), at(t0 + 10), at(t0 + 11), at(t0 + 20), at(t0 + 21)] == [
        0,
        0,
        1,
        1,
        3,
        3,
        4,
    ]
    assert at(t0 + 10**6) == _decimal(end) - _decimal(begin)

    def time_of(position: int) -> int:
        return sls_client.get_cursor_time(one_shard, LOGSTORE, 0, _cursor(_decimal(begin) + position)).get_cursor_time()

    assert [time_of(p) for p in range(4)] == [t0, t0 + 10, t0 + 10, t0 + 20]
    assert time_of(4) == t0 + 20  # the end cursor reports the last group's receive time


def test_emulator_pull_at_the_end_returns_nothing_and_the_same_cursor(sls_client: LogClient, one_shard: str):
    empty = sls_client.pull_logs(one_shard, LOGSTORE, 0, _begin_end(sls_client, one_shard, 0)[0], 10)
    assert empty.get_loggroup_count() == 0
    _put(sls_client, one_shard, 2)
    begin, end = _begin_end(sls_client, one_shard, 0)
    at_end = sls_client.pull_logs(one_shard, LOGSTORE, 0, end, 10)
    assert (at_end.get_loggroup_count(), at_end.get_next_cursor()) == (0, end)
    assert at_end.get_all_headers()["x-log-end-of-cursor"] == "1"
    empty_range = sls_client.pull_logs(one_shard, LOGSTORE, 0, begin, 10, end_cursor=begin)
    assert (empty_range.get_loggroup_count(), empty_range.get_next_cursor()) == (0, begin)


def test_emulator_pull_respects_count_and_end_cursor(sls_client: LogClient, one_shard: str):
    _put(sls_client, one_shard, 10)
    begin, _ = _begin_end(sls_client, one_shard, 0)
    stop = _cursor(_decimal(begin) + 5)
    responses = pull_range(sls_client, one_shard, LOGSTORE, 0, begin, stop, count=3)
    assert [r.get_loggroup_count() for r in responses] == [3, 2]
    assert responses[-1].get_next_cursor() == stop
    assert [log["i"] for r in responses for log in r.get_flatten_logs_json()] == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize(
    "make_cursor",
    [
        lambda begin, end: _cursor(_decimal(end) + 1),
        lambda begin, end: _cursor(_decimal(begin) - 1),
        lambda begin, end: "not a cursor!",
        lambda begin, end: base64.b64encode(b"12ab").decode(),
    ],
    ids=["past-end", "before-begin", "garbage", "not-decimal"],
)
def test_emulator_bad_cursor_is_invalid_cursor_400(sls_client: LogClient, one_shard: str, make_cursor):
    _put(sls_client, one_shard, 2)
    cursor = make_cursor(*_begin_end(sls_client, one_shard, 0))
    for call in (sls_client.pull_logs, sls_client.get_cursor_time):
        error = _error(call, one_shard, LOGSTORE, 0, cursor)
        assert (error.get_error_code(), error.resp_status) == ("InvalidCursor", 400)


def test_emulator_bad_end_cursor_is_invalid_cursor(sls_client: LogClient, one_shard: str):
    begin, end = _begin_end(sls_client, one_shard, 0)
    error = _error(sls_client.pull_logs, one_shard, LOGSTORE, 0, begin, 10, end_cursor=_cursor(_decimal(end) + 5))
    assert error.get_error_code() == "InvalidCursor"


@pytest.mark.parametrize("count", [-1, 1001])
def test_emulator_pull_count_outside_1_to_1000_is_parameter_invalid(sls_client: LogClient, one_shard: str, count):
    begin, _ = _begin_end(sls_client, one_shard, 0)
    error = _error(sls_client.pull_logs, one_shard, LOGSTORE, 0, begin, count)
    assert (error.get_error_code(), error.resp_status) == ("ParameterInvalid", 400)


def test_emulator_unknown_shard_is_shard_not_exist_404(sls_client: LogClient, one_shard: str):
    begin, _ = _begin_end(sls_client, one_shard, 0)
    for error in (
        _error(sls_client.get_cursor, one_shard, LOGSTORE, 7, "begin"),
        _error(sls_client.pull_logs, one_shard, LOGSTORE, 7, begin, 10),
    ):
        assert (error.get_error_code(), error.resp_status) == ("ShardNotExist", 404)


def test_emulator_sdk_previous_cursor_time_normalizes_out_of_range_cursor(
    sls_client: LogClient, one_shard: str, sls_clock: ManualClock
):
    _put(sls_client, one_shard, 2)
    begin, _ = _begin_end(sls_client, one_shard, 0)
    # begin - 1 is out of range; the SDK catches InvalidCursor and asks again with its own (newline-ended) cursor.
    previous = sls_client.get_previous_cursor_time(one_shard, LOGSTORE, 0, begin)
    assert previous.get_cursor_time() == int(sls_clock.now)


def test_emulator_retention_moves_begin_and_expired_cursor_is_invalid(
    sls_client: LogClient, one_shard: str, sls_clock: ManualClock, sls_emulator: EmulatorServer
):
    _put(sls_client, one_shard, 3)
    old_begin, _ = _begin_end(sls_client, one_shard, 0)
    sls_clock.advance(100)
    _put(sls_client, one_shard, 2)
    reply = requests.post(
        f"{sls_emulator.url}/_emulator/ttl",
        json={"project": one_shard, "logstore": LOGSTORE, "seconds": 50},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    begin, end = _begin_end(sls_client, one_shard, 0)
    assert _decimal(begin) == _decimal(old_begin) + 3
    for call in (sls_client.pull_logs, sls_client.get_cursor_time):
        error = _error(call, one_shard, LOGSTORE, 0, old_begin)
        assert (error.get_error_code(), error.resp_status) == ("InvalidCursor", 400)
    assert sls_client.get_cursor(one_shard, LOGSTORE, 0, int(sls_clock.now) - 1000).get_cursor() == begin
    logs = [
        log["i"]
        for r in pull_range(sls_client, one_shard, LOGSTORE, 0, begin, end)
        for log in r.get_flatten_logs_json()
    ]
    assert logs == ["0", "1"]


def test_emulator_retention_in_days_expires_everything_after_the_ttl(
    sls_client: LogClient, sls_project: str, sls_clock: ManualClock
):
    sls_client.create_logstore(sls_project, LOGSTORE, shard_count=1, ttl=1)
    _put(sls_client, sls_project, 3, logstore=LOGSTORE)
    sls_clock.advance(86400 - 1)
    begin, end = _begin_end(sls_client, sls_project, 0)
    assert _decimal(end) - _decimal(begin) == 3
    sls_clock.advance(2)
    begin, end = _begin_end(sls_client, sls_project, 0)
    assert begin == end


def test_emulator_split_parent_turns_readonly_and_drains_to_its_fixed_end(sls_client: LogClient, one_shard: str):
    _put(sls_client, one_shard, 5)
    parent_begin, parent_end = _begin_end(sls_client, one_shard, 0)
    result = sls_client.split_shard(one_shard, LOGSTORE, 0, MIDDLE_KEY).get_shards_info()
    assert [(s["shardID"], s["status"]) for s in result] == [(0, "readonly"), (1, "readwrite"), (2, "readwrite")]
    shards = {s["shardID"]: s for s in sls_client.list_shards(one_shard, LOGSTORE).get_shards_info()}
    assert (shards[1]["inclusiveBeginKey"], shards[1]["exclusiveEndKey"]) == ("0" * 32, MIDDLE_KEY)
    assert (shards[2]["inclusiveBeginKey"], shards[2]["exclusiveEndKey"]) == (MIDDLE_KEY, "f" * 32)

    _put(sls_client, one_shard, 6)
    _put(sls_client, one_shard, 1, hash_key="0" * 31 + "1")
    _put(sls_client, one_shard, 1, hash_key="f" * 32)
    assert _begin_end(sls_client, one_shard, 0) == (parent_begin, parent_end)
    drained = pull_range(sls_client, one_shard, LOGSTORE, 0, parent_begin, parent_end, count=2)
    assert sum(r.get_loggroup_count() for r in drained) == 5
    assert sls_client.pull_logs(one_shard, LOGSTORE, 0, parent_end, 10).get_loggroup_count() == 0
    child_sizes = [_decimal(e) - _decimal(b) for b, e in (_begin_end(sls_client, one_shard, s) for s in (1, 2))]
    assert child_sizes == [4, 4]
    assert len({parent_begin, *(_begin_end(sls_client, one_shard, s)[0] for s in (1, 2))}) == 3


@pytest.mark.parametrize(
    ("shard", "key"), [(0, MIDDLE_KEY), (1, "f" * 32), (1, "zz")], ids=["readonly", "outside", "not-hex"]
)
def test_emulator_split_rejects_readonly_shard_or_bad_key(sls_client: LogClient, one_shard: str, shard, key):
    sls_client.split_shard(one_shard, LOGSTORE, 0, MIDDLE_KEY)
    error = _error(sls_client.split_shard, one_shard, LOGSTORE, shard, key)
    assert (error.get_error_code(), error.resp_status) == ("ParameterInvalid", 400)


def test_emulator_merge_replaces_two_adjacent_shards_with_one(sls_client: LogClient, sls_project: str):
    sls_client.create_logstore(sls_project, LOGSTORE, shard_count=2)
    _put(sls_client, sls_project, 2)
    result = sls_client.merge_shard(sls_project, LOGSTORE, 0).get_shards_info()
    assert [(s["shardID"], s["status"]) for s in result] == [(0, "readonly"), (1, "readonly"), (2, "readwrite")]
    assert (result[2]["inclusiveBeginKey"], result[2]["exclusiveEndKey"]) == ("0" * 32, "f" * 32)
    _put(sls_client, sls_project, 3)
    sizes = [_decimal(e) - _decimal(b) for b, e in (_begin_end(sls_client, sls_project, s) for s in (0, 1, 2))]
    assert sizes == [1, 1, 3]
    for shard in (0, 2):  # a readonly shard, then the last readwrite one (no right neighbour)
        error = _error(sls_client.merge_shard, sls_project, LOGSTORE, shard)
        assert (error.get_error_code(), error.resp_status) == ("ParameterInvalid", 400)


def test_emulator_readonly_shard_leaves_list_shards_once_retention_removed_all_its_data(
    sls_client: LogClient, one_shard: str, sls_clock: ManualClock, sls_emulator: EmulatorServer
):
    _put(sls_client, one_shard, 3)
    parent_begin, parent_end = _begin_end(sls_client, one_shard, 0)
    sls_clock.advance(100)
    sls_client.split_shard(one_shard, LOGSTORE, 0, MIDDLE_KEY)
    _put(sls_client, one_shard, 2)

    def listed() -> list[tuple[int, str]]:
        return [(s["shardID"], s["status"]) for s in sls_client.list_shards(one_shard, LOGSTORE).get_shards_info()]

    assert listed() == [(0, "readonly"), (1, "readwrite"), (2, "readwrite")]
    sls_emulator.store.set_ttl_seconds(one_shard, LOGSTORE, 150)
    assert listed()[0] == (0, "readonly")  # its groups are still kept
    sls_clock.advance(60)
    # All of the parent's data is gone; the children keep theirs, and an empty readwrite shard stays listed too.
    assert listed() == [(1, "readwrite"), (2, "readwrite")]
    sls_clock.advance(1000)
    assert listed() == [(1, "readwrite"), (2, "readwrite")]
    # Retired, not deleted: its cursors still answer, for a reader that kept the shard id.
    assert _begin_end(sls_client, one_shard, 0) == (parent_end, parent_end)
    assert _decimal(parent_end) - _decimal(parent_begin) == 3
