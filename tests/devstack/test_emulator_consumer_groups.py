"""Consumer groups through the SDK: management calls, heartbeats, checkpoints and the SDK's own ConsumerWorker."""

from __future__ import annotations

import threading
import time

import pytest
from aliyun.log import LogClient, LogException, LogItem, PutLogsRequest
from aliyun.log.consumer import ConsumerProcessorBase, ConsumerWorker, CursorPosition, LogHubConfig

from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET, ManualClock

LOGSTORE = "cg"
GROUP = "readers"


@pytest.fixture
def project(sls_client: LogClient, sls_project: str) -> str:
    sls_client.create_logstore(sls_project, LOGSTORE, shard_count=4)
    return sls_project


def _groups(client: LogClient, project: str) -> list[tuple[str, int, bool]]:
    entities = client.list_consumer_group(project, LOGSTORE).get_consumer_groups()
    return [(g.get_consumer_group_name(), g.get_timeout(), g.is_in_order()) for g in entities]


def test_emulator_consumer_group_create_list_update_delete(sls_client: LogClient, project: str):
    sls_client.create_consumer_group(project, LOGSTORE, GROUP, 30)
    sls_client.create_consumer_group(project, LOGSTORE, "ordered", 10, in_order=True)
    assert _groups(sls_client, project) == [(GROUP, 30, False), ("ordered", 10, True)]
    sls_client.update_consumer_group(project, LOGSTORE, GROUP, timeout=60, in_order=True)
    sls_client.delete_consumer_group(project, LOGSTORE, "ordered")
    assert _groups(sls_client, project) == [(GROUP, 60, True)]
    with pytest.raises(LogException) as caught:
        sls_client.delete_consumer_group(project, LOGSTORE, "ordered")
    assert (caught.value.get_error_code(), caught.value.resp_status) == ("ConsumerGroupNotExist", 404)


def test_emulator_heartbeat_deals_shards_over_live_consumers(
    sls_client: LogClient, project: str, sls_clock: ManualClock
):
    sls_client.create_consumer_group(project, LOGSTORE, GROUP, 20)

    def beat(consumer: str) -> list[int]:
        return sls_client.heart_beat(project, LOGSTORE, GROUP, consumer, []).get_shards()

    assert beat("a") == [0, 1, 2, 3]
    assert beat("b") == [1, 3]
    assert beat("a") == [0, 2]
    sls_clock.advance(21)  # "a" misses its timeout
    assert beat("b") == [0, 1, 2, 3]


def test_emulator_checkpoints_round_trip_and_unset_shards_are_listed_empty(sls_client: LogClient, project: str):
    sls_client.create_consumer_group(project, LOGSTORE, GROUP, 20)
    cursor = sls_client.get_end_cursor(project, LOGSTORE, 1).get_cursor()
    before = int(time.time() * 1e6)
    sls_client.update_check_point(project, LOGSTORE, GROUP, 1, cursor, consumer="c1")
    [one] = sls_client.get_check_point(project, LOGSTORE, GROUP, 1).get_consumer_group_check_points()
    assert (one["shard"], one["checkpoint"], one["consumer"]) == (1, cursor, "c1")
    assert before <= one["updateTime"] <= time.time() * 1e6  # microseconds, as in the API example
    every = sls_client.get_check_point(project, LOGSTORE, GROUP).get_consumer_group_check_points()
    assert [(c["shard"], c["checkpoint"]) for c in every] == [(0, ""), (1, cursor), (2, ""), (3, "")]
    assert sls_client.get_check_point(project, LOGSTORE, GROUP, 9).get_consumer_group_check_points() == []
    fixed = sls_client.get_check_point_fixed(project, LOGSTORE, GROUP, 1).get_consumer_group_check_points()
    assert "checkpoint_previous_cursor_time" in fixed[0]


def test_emulator_checkpoint_without_force_needs_the_shard_holder(sls_client: LogClient, project: str):
    sls_client.create_consumer_group(project, LOGSTORE, GROUP, 20)
    held = sls_client.heart_beat(project, LOGSTORE, GROUP, "holder", []).get_shards()
    cursor = sls_client.get_begin_cursor(project, LOGSTORE, held[0]).get_cursor()
    sls_client.update_check_point(project, LOGSTORE, GROUP, held[0], cursor, consumer="holder", force_success=False)
    with pytest.raises(LogException) as caught:
        sls_client.update_check_point(project, LOGSTORE, GROUP, held[0], cursor, consumer="other", force_success=False)
    assert (caught.value.get_error_code(), caught.value.resp_status) == ("ConsumerNotMatch", 400)


class _Collector(ConsumerProcessorBase):
    """Collects every log value of key ``i`` and checkpoints after each batch."""

    def __init__(self, seen: list[str], lock: threading.Lock) -> None:
        super().__init__()
        self.seen, self.lock = seen, lock

    def process(self, log_groups, check_point_tracker) -> None:
        with self.lock:
            self.seen.extend(c.Value for g in log_groups.LogGroups for log in g.Logs for c in log.Contents)
        self.save_checkpoint(check_point_tracker, force=True)


def test_emulator_sdk_consumer_worker_reads_everything_and_checkpoints(
    sls_client: LogClient, project: str, sls_proxy_env: str
):
    expected = [str(i) for i in range(200)]
    for start in range(0, 200, 20):
        items = [LogItem(int(time.time()), [("i", v)]) for v in expected[start : start + 20]]
        sls_client.put_logs(PutLogsRequest(project, LOGSTORE, "", "src", items))
    seen: list[str] = []
    lock = threading.Lock()
    config = LogHubConfig(
        sls_proxy_env, SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET, project, LOGSTORE, GROUP, "worker-1",
        cursor_position=CursorPosition.BEGIN_CURSOR, heartbeat_interval=1, data_fetch_interval=0.1,
    )  # fmt: skip
    worker = ConsumerWorker(lambda: _Collector(seen, lock), config)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(seen) < len(expected):
            time.sleep(0.1)
    finally:
        worker.shutdown()  # only flags the stop; the worker thread flushes checkpoints on its way out
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert sorted(seen, key=int) == expected
    checkpoints = sls_client.get_check_point(project, LOGSTORE, GROUP).get_consumer_group_check_points()
    ends = [sls_client.get_end_cursor(project, LOGSTORE, s).get_cursor() for s in range(4)]
    assert [c["checkpoint"] for c in checkpoints] == ends
