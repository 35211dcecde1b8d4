"""Injected faults as the SDK sees them, driven in-process and through the admin HTTP endpoint."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests
from aliyun.log import LogClient, LogException, LogItem, PutLogsRequest

from devstack.sls_emulator import EmulatorServer, FaultInjector

LOGSTORE = "faulty"


@pytest.fixture
def project(sls_client: LogClient, sls_project: str) -> str:
    sls_client.create_logstore(sls_project, LOGSTORE, shard_count=2)
    items = [LogItem(int(time.time()), [("k", "v")])]
    for _ in range(4):
        sls_client.put_logs(PutLogsRequest(sls_project, LOGSTORE, "", "src", items))
    return sls_project


def _pull(client: LogClient, project: str, shard: int = 0) -> int:
    begin = client.get_begin_cursor(project, LOGSTORE, shard).get_cursor()
    return client.pull_logs(project, LOGSTORE, shard, begin, 10).get_loggroup_count()


def _error(call: Callable[[], object]) -> LogException:
    with pytest.raises(LogException) as caught:
        call()
    return caught.value


def test_emulator_three_500s_are_absorbed_by_the_sdk_retries(
    sls_client: LogClient, project: str, sls_faults: FaultInjector
):
    sls_faults.error("pull_logs", "InternalServerError", times=3, project=project)
    started = time.monotonic()
    assert _pull(sls_client, project) == 2
    assert time.monotonic() - started >= 3  # the SDK sleeps 1 s before each retry
    assert sls_faults.pending() == []


@pytest.mark.parametrize("code", ["ReadQuotaExceed", "ShardReadQuotaExceed"])
def test_emulator_read_quota_fault_is_a_403_only_on_the_chosen_shard(
    sls_client: LogClient, project: str, sls_faults: FaultInjector, code: str
):
    sls_faults.error("pull_logs", code, shard=1)
    assert _pull(sls_client, project, shard=0) == 2
    error = _error(lambda: _pull(sls_client, project, shard=1))
    assert (error.get_error_code(), error.resp_status) == (code, 403)
    assert _pull(sls_client, project, shard=1) == 2  # used up


def test_emulator_delay_fault_slows_the_response(sls_client: LogClient, project: str, sls_faults: FaultInjector):
    sls_faults.delay("list_shards", seconds=0.6)
    started = time.monotonic()
    assert sls_client.list_shards(project, LOGSTORE).count == 2
    assert time.monotonic() - started >= 0.6


def test_emulator_dropped_connection_is_retried_by_the_sdk_through_the_proxy(
    sls_client: LogClient, project: str, sls_faults: FaultInjector
):
    sls_faults.drop("get_cursor", times=2)
    started = time.monotonic()
    assert sls_client.get_end_cursor(project, LOGSTORE, 0).get_cursor()
    assert time.monotonic() - started >= 2
    assert sls_faults.pending() == []


def test_emulator_dropped_connection_is_a_connection_error_for_plain_requests(
    sls_proxy_env: str, project: str, sls_faults: FaultInjector
):
    sls_faults.drop("list_shards")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{project}.{sls_proxy_env}/logstores/{LOGSTORE}/shards", timeout=10)


def test_emulator_truncated_body_is_a_request_error_the_sdk_does_not_retry(
    sls_client: LogClient, project: str, sls_faults: FaultInjector
):
    sls_faults.truncate("pull_logs")
    error = _error(lambda: _pull(sls_client, project))
    assert error.get_error_code() == "LogRequestError"
    assert "IncompleteRead" in error.get_error_message()


def test_emulator_any_fault_hits_every_operation_kind(sls_client: LogClient, project: str, sls_faults: FaultInjector):
    sls_faults.error("any", "WriteQuotaExceed", project=project)
    items = [LogItem(int(time.time()), [("k", "v")])]
    error = _error(lambda: sls_client.put_logs(PutLogsRequest(project, LOGSTORE, "", "s", items)))
    assert (error.get_error_code(), error.resp_status) == ("WriteQuotaExceed", 403)
    sls_client.put_logs(PutLogsRequest(project, LOGSTORE, "", "s", items))


@pytest.fixture
def admin(sls_emulator: EmulatorServer, sls_faults: FaultInjector) -> str:
    return f"{sls_emulator.url}/_emulator"


def test_emulator_admin_endpoint_adds_lists_and_clears_faults(sls_client: LogClient, project: str, admin: str):
    rules = [
        {"op": "pull_logs", "action": "error", "code": "ShardReadQuotaExceed", "times": 2, "shard": 0},
        {"op": "list_shards", "action": "delay", "delay_s": 0.01},
    ]
    reply = requests.post(f"{admin}/faults", json=rules, timeout=10)
    assert reply.status_code == 200, reply.text
    assert [(f["op"], f["times"]) for f in reply.json()["faults"]] == [("pull_logs", 2), ("list_shards", 1)]
    assert _error(lambda: _pull(sls_client, project)).get_error_code() == "ShardReadQuotaExceed"
    remaining = requests.get(f"{admin}/faults", timeout=10).json()["faults"]
    assert [(f["op"], f["times"], f["status"]) for f in remaining] == [("pull_logs", 1, 403), ("list_shards", 1, None)]
    assert requests.delete(f"{admin}/faults", timeout=10).json() == {"faults": []}
    assert _pull(sls_client, project) == 2


@pytest.mark.parametrize(
    "rule",
    [{"op": "nope"}, {"action": "explode"}, {"times": 0}, {"colour": "red"}, ["not an object"]],
    ids=["op", "action", "times", "unknown-key", "not-object"],
)
def test_emulator_admin_endpoint_rejects_bad_fault_rules(admin: str, rule: object):
    reply = requests.post(f"{admin}/faults", json=rule, timeout=10)
    assert (reply.status_code, reply.json()["errorCode"]) == (400, "ParameterInvalid")


def test_emulator_admin_reset_forgets_everything():
    with EmulatorServer() as server:
        server.store.create_project("p", "")
        server.faults.drop()
        assert requests.post(f"{server.url}/_emulator/reset", timeout=10).status_code == 200
        assert server.store.projects == {}
        assert server.faults.pending() == []
