"""A wrong SLS endpoint or a missing proxy fails at once, naming the host and what to set (issue 14, item 4).

The commands run as a user runs them (`python -m processor`, no proxy in the environment); the SDK is the
unmodified one. Before, `lag` and `run` failed after ~70 s with urllib3's text and `invoke` retried ~10 min.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import requests
from aliyun.log import LogClient, LogException

from common.errors import ConfigError, SourceError
from devstack import stack
from devstack.cli import access_lines
from processor.sls.endpoint import check_endpoint
from processor.sls.retry import is_retriable_sls_error
from processor.sls.shards import Logstore
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET

REPO = Path(__file__).resolve().parents[3]
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
# Fails at once: the subprocess' start (imports) plus one name lookup, far below the SDK's 10 retries.
PROMPT_SECONDS = 8.0
CURSOR = "MTAw"  # base64 of the position 100


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    return {**env, "PYTHONPATH": str(REPO), "ALIBABA_CLOUD_ACCESS_KEY_ID": "id",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "KAFKA_TOPIC": "vehicles", "SLS_PROJECT": "demo", "SLS_LOGSTORE": "driving", **extra}


def _sls_kafka(*args: str, env: dict[str, str], stdin: str | None = None) -> tuple[subprocess.CompletedProcess[str],
                                                                                float]:
    started = time.monotonic()
    # The timeout is what made the old behaviour fail this test: minutes of retries.
    result = subprocess.run([sys.executable, "-m", "processor", *args], env=env, capture_output=True, text=True,
                            input=stdin, timeout=60, check=False, cwd=REPO)
    return result, time.monotonic() - started


def _assert_prompt_named_failure(result: subprocess.CompletedProcess[str], seconds: float, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert seconds < PROMPT_SECONDS, f"took {seconds:.1f}s"
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr


@pytest.mark.parametrize("command", [("lag",), ("run", "--once"), ("backfill", "--dry-run")])
def test_emulator_name_without_proxy_fails_at_once_saying_set_http_proxy(command, tmp_path):
    env = _env(SLS_ENDPOINT="cn-hangzhou.log.emulator", CHECKPOINT_DIR=str(tmp_path))
    result, seconds = _sls_kafka(*command, env=env)
    _assert_prompt_named_failure(result, seconds, "'demo.cn-hangzhou.log.emulator'", "HTTP_PROXY")


def test_dev_up_address_as_endpoint_is_explained(tmp_path):
    env = _env(SLS_ENDPOINT="http://127.0.0.1:8090", CHECKPOINT_DIR=str(tmp_path))
    result, seconds = _sls_kafka("lag", env=env)
    _assert_prompt_named_failure(result, seconds, "'demo.127.0.0.1'", "puts the project in front",
                                 "SLS_ENDPOINT=cn-hangzhou.log.emulator")


def test_invoke_with_an_unresolvable_endpoint_fails_at_once(tmp_path):
    event = {"source": {"endpoint": "cn-hangzhou.log.emulator", "projectName": "demo", "logstoreName": "driving",
                        "shardId": 0, "beginCursor": CURSOR, "endCursor": CURSOR}}
    env = _env(CHECKPOINT_DIR=str(tmp_path))
    result, seconds = _sls_kafka("invoke", "--event", "-", env=env, stdin=orjson.dumps(event).decode())
    _assert_prompt_named_failure(result, seconds, "'demo.cn-hangzhou.log.emulator'", "HTTP_PROXY")


def test_unknown_aliyun_host_names_the_endpoint_to_check(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        check_endpoint("cn-nowhere.log.invalid", "demo")
    assert "'demo.cn-nowhere.log.invalid'" in str(info.value)
    assert "cn-hangzhou.log.aliyuncs.com" in str(info.value)


def test_name_resolution_failure_is_not_retried():
    # The text the SDK wraps in LogRequestError, from the real requests.
    with pytest.raises(requests.ConnectionError) as info:
        requests.get("http://demo.cn-hangzhou.log.emulator/logstores", timeout=5,
                     proxies={"http": "", "https": ""})
    wrapped = LogException("LogRequestError", str(info.value))
    assert not is_retriable_sls_error(wrapped)
    assert is_retriable_sls_error(LogException("LogRequestError", "Connection aborted: RemoteDisconnected"))


def test_sdk_name_resolution_failure_is_a_source_error_naming_the_host(monkeypatch):
    """Past the up-front check (a name that stops resolving later): one try, named, instead of the SDK's ten."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    client = LogClient("cn-hangzhou.log.emulator", SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET)
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        Logstore(client, "demo", "driving").list_parts()
    # The SDK's own 10 tries are 1 s apart; before, our policy retried them for 60 s more.
    assert time.monotonic() - started < 3
    assert "'demo.cn-hangzhou.log.emulator'" in str(info.value)
    assert "HTTP_PROXY" in str(info.value)


def test_dev_up_prints_exports_that_reach_the_emulator(sls_emulator, sls_client, sls_project, monkeypatch):
    services = {stack.SLS: stack.Service(stack.SLS, os.getpid(), 0, sls_emulator.port, "", "emulator.log"),
                stack.KAFKA: stack.Service(stack.KAFKA, os.getpid(), 0, 9092, "", "broker.log")}
    exports = dict(line.removeprefix("export ").split("=", 1) for line in access_lines(services)
                   if line.startswith("export "))
    assert exports["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", exports["HTTP_PROXY"])
    check_endpoint(exports["SLS_ENDPOINT"], sls_project)
    client = LogClient(exports["SLS_ENDPOINT"], SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET)
    assert client.get_project(sls_project).get_projectname() == sls_project
