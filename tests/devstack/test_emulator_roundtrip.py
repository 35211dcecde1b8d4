"""Writes and reads through the unmodified SDK: every log comes back, under every compression."""

from __future__ import annotations

import base64
import hashlib
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import pytest
from aliyun.log import LogClient, LogItem, PutLogsRequest
from aliyun.log.proto import LogGroupRaw
from aliyun.log.pulllog_response import PullLogResponse

from tests.sls_fixtures import pull_range

LOGSTORE = "events"
GROUPS = 120
LOGS_PER_GROUP = 100

Record = tuple[int, int, str, str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]


def _contents(group: int, index: int) -> list[tuple[str, str]]:
    return [
        ("message", f"request {group}-{index} served"),
        ("level", ("INFO", "WARN", "ERROR")[index % 3]),
        ("n", str(index)),
        ("utf8", "日志-ü"),
        ("empty", ""),
    ]


def _write_all(client: LogClient, project: str, t0: int) -> Counter[Record]:
    """Write GROUPS groups, alternating hash-key routing, zstd, uncompressed and lz4; return what was sent."""
    sent: Counter[Record] = Counter()
    for group in range(GROUPS):
        topic, source = f"topic-{group % 3}", f"10.0.0.{group % 5}"
        tags = [("env", "test"), ("group", str(group))]
        items = []
        for index in range(LOGS_PER_GROUP):
            item = LogItem(t0 + index, _contents(group, index))
            item.set_time_nano_part(index * 1000)
            items.append(item)
            sent[(t0 + index, index * 1000, topic, source, tuple(sorted(tags)), tuple(_contents(group, index)))] += 1
        request = PutLogsRequest(project, LOGSTORE, topic, source, items, logtags=tags)
        variant = group % 4
        if variant == 0:
            request.set_hash_key(hashlib.md5(str(group).encode()).hexdigest())
        elif variant == 1:
            request.set_compress_type("zstd")
        elif variant == 2:
            request.set_compress(False)
        client.put_logs(request)
    return sent


def _records(responses: Iterable[PullLogResponse]) -> Counter[Record]:
    got: Counter[Record] = Counter()
    for response in responses:
        for group in response.get_loggroup_list().LogGroups:
            tags = tuple(sorted((t.Key, t.Value) for t in group.LogTags))
            for log in group.Logs:
                contents = tuple((c.Key, c.Value) for c in log.Contents)
                got[(log.Time, log.Time_ns, group.Topic, group.Source, tags, contents)] += 1
    return got


@pytest.fixture
def written(sls_client: LogClient, sls_project: str) -> Counter[Record]:
    sls_client.create_logstore(sls_project, LOGSTORE, shard_count=4)
    return _write_all(sls_client, sls_project, int(time.time()) - 3600)


@pytest.mark.parametrize(
    "pull_kwargs", [{}, {"accept_compress_type": "zstd"}, {"compress": False}], ids=["lz4", "zstd", "none"]
)
def test_emulator_roundtrip_every_shard_every_compression_returns_exactly_what_was_written(
    sls_client: LogClient, sls_project: str, written: Counter[Record], pull_kwargs: dict[str, object]
):
    got: Counter[Record] = Counter()
    groups_seen = 0
    for shard in range(4):
        begin = sls_client.get_begin_cursor(sls_project, LOGSTORE, shard).get_cursor()
        end = sls_client.get_end_cursor(sls_project, LOGSTORE, shard).get_cursor()
        responses = pull_range(sls_client, sls_project, LOGSTORE, shard, begin, end, count=7, **pull_kwargs)
        assert all(r.get_loggroup_count() <= 7 for r in responses)
        assert responses[-1].get_next_cursor() == end
        groups_seen += sum(r.get_loggroup_count() for r in responses)
        got += _records(responses)
    assert groups_seen == GROUPS
    assert sum(written.values()) == GROUPS * LOGS_PER_GROUP
    assert got == written


def test_emulator_roundtrip_response_headers_describe_the_body(sls_client: LogClient, sls_project: str, written):
    begin = sls_client.get_begin_cursor(sls_project, LOGSTORE, 0).get_cursor()
    response = sls_client.pull_logs(sls_project, LOGSTORE, 0, begin, count=2)
    headers = response.get_all_headers()
    assert headers["x-log-compresstype"] == "lz4"
    assert int(headers["x-log-count"]) == response.get_loggroup_count() == 2
    assert int(headers["x-log-bodyrawsize"]) == len(response.get_loggroup_list().SerializeToString())
    assert headers["x-log-end-of-cursor"] == "0"
    assert abs(int(headers["x-log-cursor-time"]) - time.time()) < 60
    assert headers["x-log-requestid"]


def test_emulator_roundtrip_all_groups_spread_over_all_shards(sls_client: LogClient, sls_project: str, written):
    per_shard = []
    for shard in range(4):
        begin = sls_client.get_begin_cursor(sls_project, LOGSTORE, shard).get_cursor()
        end = sls_client.get_end_cursor(sls_project, LOGSTORE, shard).get_cursor()
        per_shard.append(_decimal(end) - _decimal(begin))
    assert sum(per_shard) == GROUPS
    assert all(n > 0 for n in per_shard)


def _decimal(cursor: str) -> int:
    return int(base64.b64decode(cursor))


def test_emulator_put_with_hash_key_lands_in_the_shard_covering_it(sls_client: LogClient, sls_project: str):
    sls_client.create_logstore(sls_project, LOGSTORE, shard_count=4)
    shards = sls_client.list_shards(sls_project, LOGSTORE).get_shards_info()
    for shard in shards:
        key = shard["inclusiveBeginKey"][:-1] + "1"
        items = [LogItem(int(time.time()), [("shard", str(shard["shardID"]))])]
        sls_client.put_logs(PutLogsRequest(sls_project, LOGSTORE, "", "src", items, hashKey=key))
    for shard in shards:
        begin = sls_client.get_begin_cursor(sls_project, LOGSTORE, shard["shardID"]).get_cursor()
        logs = sls_client.pull_logs(sls_project, LOGSTORE, shard["shardID"], begin).get_flatten_logs_json()
        assert [log["shard"] for log in logs] == [str(shard["shardID"])]


def test_emulator_put_log_raw_is_readable(sls_client: LogClient, sls_project: str):
    sls_client.create_logstore(sls_project, LOGSTORE, shard_count=1)
    group = LogGroupRaw()
    group.Topic, group.Source = "raw", "1.2.3.4"
    log = group.Logs.add()
    log.Time = 1700000000
    content = log.Contents.add()
    content.Key, content.Value = "k", b"v"
    sls_client.put_log_raw(sls_project, LOGSTORE, group)
    begin = sls_client.get_begin_cursor(sls_project, LOGSTORE, 0).get_cursor()
    logs = sls_client.pull_logs(sls_project, LOGSTORE, 0, begin).get_flatten_logs_json()
    assert logs == [{"__time__": 1700000000, "__topic__": "raw", "__source__": "1.2.3.4", "k": "v"}]


def test_emulator_list_shards_splits_the_md5_space_evenly(sls_client: LogClient, sls_project: str):
    sls_client.create_logstore(sls_project, LOGSTORE, shard_count=4)
    shards = sls_client.list_shards(sls_project, LOGSTORE).get_shards_info()
    assert [s["shardID"] for s in shards] == [0, 1, 2, 3]
    assert {s["status"] for s in shards} == {"readwrite"}
    assert [(s["inclusiveBeginKey"], s["exclusiveEndKey"]) for s in shards] == [
        ("0" * 32, "4" + "0" * 31),
        ("4" + "0" * 31, "8" + "0" * 31),
        ("8" + "0" * 31, "c" + "0" * 31),
        ("c" + "0" * 31, "f" * 32),
    ]
    assert all(abs(s["createTime"] - time.time()) < 60 for s in shards)


def test_emulator_append_meta_adds_receive_time_and_client_ip_tags(sls_client: LogClient, sls_project: str):
    sls_client.create_logstore(sls_project, "plain", shard_count=1)
    sls_client.create_logstore(sls_project, "meta", shard_count=1, append_meta=True)
    for logstore in ("plain", "meta"):
        items = [LogItem(1700000000, [("k", "v")])]
        sls_client.put_logs(PutLogsRequest(sls_project, logstore, "", "src", items))
    pulled = {}
    for logstore in ("plain", "meta"):
        begin = sls_client.get_begin_cursor(sls_project, logstore, 0).get_cursor()
        [pulled[logstore]] = sls_client.pull_logs(sls_project, logstore, 0, begin).get_flatten_logs_json()
    assert not any(key.startswith("__tag__") for key in pulled["plain"])
    assert pulled["meta"]["__tag__:__client_ip__"] == "127.0.0.1"
    assert abs(int(pulled["meta"]["__tag__:__receive_time__"]) - time.time()) < 60


def test_emulator_project_and_logstore_management(sls_client: LogClient, sls_project: str):
    sls_client.create_logstore(sls_project, "a", shard_count=2, ttl=7)
    sls_client.create_logstore(sls_project, "b", shard_count=1)
    assert sls_client.list_logstore(sls_project).get_logstores() == ["a", "b"]
    assert sls_client.list_logstore(sls_project, "b").get_logstores() == ["b"]
    store = sls_client.get_logstore(sls_project, "a")
    assert (store.get_ttl(), store.get_shard_count()) == (7, 2)
    sls_client.update_logstore(sls_project, "a", ttl=9)
    assert sls_client.get_logstore(sls_project, "a").get_ttl() == 9
    sls_client.delete_logstore(sls_project, "b")
    assert sls_client.list_logstore(sls_project).get_logstores() == ["a"]
    assert sls_client.get_project(sls_project).projectName == sls_project
    assert sls_project in [p["projectName"] for p in sls_client.list_project(size=500).get_projects()]


def test_emulator_concurrent_writers_lose_nothing(sls_client_factory, sls_project: str):
    setup = sls_client_factory()
    setup.create_logstore(sls_project, LOGSTORE, shard_count=2)

    def write(writer: int) -> None:
        client = sls_client_factory()  # one session per thread, as real writers would have
        for index in range(25):
            items = [LogItem(1700000000, [("id", f"{writer}-{index}")])]
            client.put_logs(PutLogsRequest(sls_project, LOGSTORE, "", "src", items))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, range(4)))
    ids = []
    for shard in range(2):
        begin = setup.get_begin_cursor(sls_project, LOGSTORE, shard).get_cursor()
        end = setup.get_end_cursor(sls_project, LOGSTORE, shard).get_cursor()
        ids += [
            log["id"]
            for r in pull_range(setup, sls_project, LOGSTORE, shard, begin, end)
            for log in r.get_flatten_logs_json()
        ]
    assert sorted(ids) == sorted(f"{w}-{i}" for w in range(4) for i in range(25))
