"""Every SLS error the emulator emits reaches the SDK as LogException(code, HTTP status, request id)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from aliyun.log import LogClient, LogException

LOGSTORE = "errs"
GARBAGE_CURSOR = "bm90LWEtY3Vyc29y"  # base64("not-a-cursor")


class _GarbageGroup:
    """Stands in for a LogGroup whose serialization is not valid protobuf."""

    def SerializeToString(self) -> bytes:
        return b"\x0a\xff\xff\xff"


Scenario = Callable[[LogClient, str], object]

SCENARIOS: list[tuple[str, Scenario, str, int]] = [
    ("missing project", lambda c, p: c.get_logstore(p + "-missing", LOGSTORE), "ProjectNotExist", 404),
    ("missing logstore", lambda c, p: c.list_shards(p, "missing"), "LogStoreNotExist", 404),
    ("missing shard", lambda c, p: c.get_cursor(p, LOGSTORE, 42, "end"), "ShardNotExist", 404),
    ("garbage cursor", lambda c, p: c.pull_logs(p, LOGSTORE, 0, GARBAGE_CURSOR, 10), "InvalidCursor", 400),
    ("bad count", lambda c, p: c.pull_logs(p, LOGSTORE, 0, GARBAGE_CURSOR, 5000), "ParameterInvalid", 400),
    ("bad shard count", lambda c, p: c.create_logstore(p, "other", shard_count=0), "ParameterInvalid", 400),
    ("project exists", lambda c, p: c.create_project(p, "again"), "ProjectAlreadyExist", 400),
    ("logstore exists", lambda c, p: c.create_logstore(p, LOGSTORE), "LogStoreAlreadyExist", 400),
    ("group exists", lambda c, p: c.create_consumer_group(p, LOGSTORE, "g", 10), "ConsumerGroupAlreadyExist", 400),
    ("missing group", lambda c, p: c.get_check_point(p, LOGSTORE, "nope"), "ConsumerGroupNotExist", 404),
    ("missing group hb", lambda c, p: c.heart_beat(p, LOGSTORE, "nope", "c1"), "ConsumerGroupNotExist", 404),
    (
        "checkpoint not base64",
        lambda c, p: c.update_check_point(p, LOGSTORE, "g", 0, "%%%"),
        "InvalidShardCheckPoint",
        400,
    ),
    ("invalid protobuf", lambda c, p: c.put_log_raw(p, LOGSTORE, _GarbageGroup()), "PostBodyInvalid", 400),
]


@pytest.fixture
def project(sls_client: LogClient, sls_project: str) -> str:
    sls_client.create_logstore(sls_project, LOGSTORE, shard_count=1)
    sls_client.create_consumer_group(sls_project, LOGSTORE, "g", 10)
    return sls_project


@pytest.mark.parametrize(("scenario", "code", "status"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS])
def test_emulator_error_reaches_sdk_with_code_status_and_request_id(
    sls_client: LogClient, project: str, scenario: Scenario, code: str, status: int
):
    with pytest.raises(LogException) as caught:
        scenario(sls_client, project)
    error = caught.value
    assert (error.get_error_code(), error.resp_status) == (code, status), error.get_error_message()
    assert error.get_error_message()
    assert len(error.get_request_id()) == 24


def test_emulator_error_body_is_exactly_the_sls_json_document(sls_proxy_env: str, project: str):
    reply = requests.get(f"http://{project}.{sls_proxy_env}/logstores/missing/shards", timeout=10)
    assert reply.status_code == 404
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.headers["x-log-requestid"]
    assert set(reply.json()) == {"errorCode", "errorMessage"}
    assert reply.json()["errorCode"] == "LogStoreNotExist"


def test_emulator_unknown_path_is_an_sls_style_404(sls_proxy_env: str, project: str):
    reply = requests.get(f"http://{project}.{sls_proxy_env}/no/such/api", timeout=10)
    assert (reply.status_code, reply.json()["errorCode"]) == (404, "NotFound")


def test_emulator_missing_query_parameter_is_missing_parameter(sls_proxy_env: str, project: str):
    reply = requests.get(f"http://{project}.{sls_proxy_env}/logstores/{LOGSTORE}/shards/0?type=cursor", timeout=10)
    assert (reply.status_code, reply.json()["errorCode"]) == (400, "MissingParameter")


def test_emulator_get_cursor_from_that_is_no_time_is_parameter_invalid(sls_proxy_env: str, project: str):
    url = f"http://{project}.{sls_proxy_env}/logstores/{LOGSTORE}/shards/0?type=cursor&from=yesterday"
    reply = requests.get(url, timeout=10)
    assert (reply.status_code, reply.json()["errorCode"]) == (400, "ParameterInvalid")
