"""State in a data directory survives a restart; the CLI serves until SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from aliyun.log import LogClient, LogItem, PutLogsRequest

from devstack.sls_emulator import EmulatorServer
from tests.sls_fixtures import pull_range

REPO = Path(__file__).resolve().parents[2]
PROJECT, LOGSTORE = "kept", "events"


def _client(server: EmulatorServer, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> LogClient:
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, server.proxy_url)
    return LogClient(endpoint, "ak", "secret")


def _put(client: LogClient, values: range) -> None:
    for value in values:
        client.put_logs(PutLogsRequest(PROJECT, LOGSTORE, "", "src", [LogItem(1700000000, [("v", str(value))])]))


def _snapshot(client: LogClient) -> dict[str, Any]:
    shards = client.list_shards(PROJECT, LOGSTORE).get_shards_info()
    state: dict[str, Any] = {"shards": shards, "data": {}}
    for shard in shards:
        shard_id = shard["shardID"]
        begin = client.get_begin_cursor(PROJECT, LOGSTORE, shard_id).get_cursor()
        end = client.get_end_cursor(PROJECT, LOGSTORE, shard_id).get_cursor()
        values = [
            log["v"]
            for r in pull_range(client, PROJECT, LOGSTORE, shard_id, begin, end)
            for log in r.get_flatten_logs_json()
        ]
        state["data"][shard_id] = (begin, end, values)
    state["checkpoints"] = client.get_check_point(PROJECT, LOGSTORE, "g").get_consumer_group_check_points()
    state["ttl"] = client.get_logstore(PROJECT, LOGSTORE).get_ttl()
    return state


def test_emulator_restart_with_data_dir_keeps_shards_data_cursors_and_checkpoints(
    tmp_path: Path, sls_proxy_env: str, monkeypatch: pytest.MonkeyPatch
):
    with EmulatorServer(data_dir=tmp_path) as first:
        client = _client(first, sls_proxy_env, monkeypatch)
        client.create_project(PROJECT, "survives restarts")
        client.create_logstore(PROJECT, LOGSTORE, shard_count=2, ttl=3)
        _put(client, range(10))
        client.split_shard(PROJECT, LOGSTORE, 0, "2" + "0" * 31)
        _put(client, range(10, 16))
        client.create_consumer_group(PROJECT, LOGSTORE, "g", 30)
        client.update_check_point(PROJECT, LOGSTORE, "g", 1, client.get_end_cursor(PROJECT, LOGSTORE, 1).get_cursor())
        before = _snapshot(client)
    with EmulatorServer(data_dir=tmp_path) as second:
        client = _client(second, sls_proxy_env, monkeypatch)
        assert _snapshot(client) == before
        _put(client, range(16, 19))
        after = _snapshot(client)
    assert sorted(v for _, _, values in after["data"].values() for v in values) == sorted(str(v) for v in range(19))
    for shard_id, (begin, _, values) in after["data"].items():
        assert begin == before["data"][shard_id][0]
        assert values[: len(before["data"][shard_id][2])] == before["data"][shard_id][2]


def test_emulator_restart_ignores_a_torn_last_record(
    tmp_path: Path, sls_proxy_env: str, monkeypatch: pytest.MonkeyPatch
):
    with EmulatorServer(data_dir=tmp_path) as first:
        client = _client(first, sls_proxy_env, monkeypatch)
        client.create_project(PROJECT, "")
        client.create_logstore(PROJECT, LOGSTORE, shard_count=1)
        client.create_consumer_group(PROJECT, LOGSTORE, "g", 30)
        _put(client, range(3))
        before = _snapshot(client)
    [shard_file] = (tmp_path / "shards" / PROJECT / LOGSTORE).glob("*.bin")
    with shard_file.open("ab") as handle:
        handle.write(b"\x00\x00\x00\x00\x00\x00\xf0\x3f\xff\xff\x00\x00partial")  # header promising 65535 bytes
    with EmulatorServer(data_dir=tmp_path) as second:
        assert _snapshot(_client(second, sls_proxy_env, monkeypatch)) == before


def test_emulator_cli_serves_until_sigterm(tmp_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.sls_emulator", "--port", "0", "--data-dir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline() for _ in range(3)]
        url = banner[0].rsplit(" ", 1)[-1].strip()
        assert f"HTTP_PROXY={url}" in banner[1]
        probe = requests.get(f"{url}/ready", timeout=10)
        assert (probe.status_code, probe.json()["errorCode"]) == (404, "NotFound")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
