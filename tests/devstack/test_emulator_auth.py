"""v1 signature checking against the SDK's real signer, on an emulator started with access keys."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
import requests
from aliyun.log import LogClient, LogException, LogItem, PutLogsRequest
from aliyun.log.auth import AuthV1

from devstack.sls_emulator import EmulatorServer

KEY_ID, SECRET = "ak-right", "right-secret"
LOGSTORE = "signed"

ClientFactory = Callable[..., LogClient]


@pytest.fixture(scope="module")
def signed_emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(credentials={KEY_ID: SECRET}).start()
    yield server
    server.stop()


@pytest.fixture
def make_client(signed_emulator: EmulatorServer, sls_proxy_env: str, monkeypatch: pytest.MonkeyPatch) -> ClientFactory:
    """Clients for the signing emulator; the SDK reads HTTP_PROXY per request, so overriding it here is enough."""
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, signed_emulator.proxy_url)

    def make(key_id: str = KEY_ID, secret: str = SECRET, token: str | None = None) -> LogClient:
        return LogClient(sls_proxy_env, key_id, secret, securityToken=token)

    return make


@pytest.fixture
def project(make_client: ClientFactory) -> str:
    name = f"signed-{uuid.uuid4().hex[:10]}"
    client = make_client()
    client.create_project(name, "signed")
    client.create_logstore(name, LOGSTORE, shard_count=1)
    return name


def _code(call: Callable[[], object]) -> tuple[str, int, str]:
    with pytest.raises(LogException) as caught:
        call()
    return caught.value.get_error_code(), caught.value.resp_status, caught.value.get_error_message()


def test_emulator_right_secret_signs_every_kind_of_request(make_client: ClientFactory, project: str):
    client = make_client()
    client.put_logs(PutLogsRequest(project, LOGSTORE, "t", "s", [LogItem(int(time.time()), [("k", "v w=x&y")])]))
    begin = client.get_begin_cursor(project, LOGSTORE, 0).get_cursor()
    end = client.get_end_cursor(project, LOGSTORE, 0).get_cursor()
    assert "=" in begin  # URL-encoded on the wire, signed raw: the server must decode before verifying
    assert client.pull_logs(project, LOGSTORE, 0, begin, 10, end_cursor=end).get_loggroup_count() == 1
    client.create_consumer_group(project, LOGSTORE, "g", 10)
    client.update_check_point(project, LOGSTORE, "g", 0, end)  # consumer="" is signed as "consumer="
    assert client.get_check_point(project, LOGSTORE, "g", 0).get_consumer_group_check_points()[0]["checkpoint"] == end


def test_emulator_wrong_secret_is_signature_not_match_401(make_client: ClientFactory, project: str):
    code, status, _ = _code(lambda: make_client(secret="wrong").list_shards(project, LOGSTORE))
    assert (code, status) == ("SignatureNotMatch", 401)


def test_emulator_unknown_access_key_is_invalid_access_key_id_401(make_client: ClientFactory, project: str):
    code, status, _ = _code(lambda: make_client(key_id="nobody").list_shards(project, LOGSTORE))
    assert (code, status) == ("InvalidAccessKeyId", 401)


def test_emulator_unsigned_request_is_unauthorized_401(make_client: ClientFactory, project: str):
    reply = requests.get(f"http://{project}.cn-hangzhou.log.emulator/logstores/{LOGSTORE}/shards", timeout=10)
    assert (reply.status_code, reply.json()["errorCode"]) == (401, "Unauthorized")


def test_emulator_sts_token_must_match_and_can_expire(
    make_client: ClientFactory, project: str, signed_emulator: EmulatorServer
):
    key_id = f"sts-{uuid.uuid4().hex[:6]}"
    signed_emulator.auth.add_key(key_id, "sts-secret", security_token="token-1")
    assert make_client(key_id, "sts-secret", "token-1").list_shards(project, LOGSTORE).count == 1
    code, status, _ = _code(lambda: make_client(key_id, "sts-secret", "forged").list_shards(project, LOGSTORE))
    assert (code, status) == ("Unauthorized", 401)
    signed_emulator.auth.expire_token(key_id)
    code, status, message = _code(lambda: make_client(key_id, "sts-secret", "token-1").list_shards(project, LOGSTORE))
    assert (code, status) == ("Unauthorized", 401)
    assert "expired" in message


def test_emulator_request_dated_20_minutes_ago_is_request_time_expired(
    make_client: ClientFactory, project: str, monkeypatch: pytest.MonkeyPatch
):
    stale = (datetime.now(timezone.utc) - timedelta(minutes=20)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    monkeypatch.setattr(AuthV1, "_getGMT", staticmethod(lambda: stale))
    code, status, _ = _code(lambda: make_client().list_shards(project, LOGSTORE))
    assert (code, status) == ("RequestTimeExpired", 400)
