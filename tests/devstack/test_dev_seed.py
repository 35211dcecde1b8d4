"""`sls-kafka dev seed` writes sample driving logs into the running emulator, readable through the SDK."""

import subprocess
import sys
from pathlib import Path

import pytest
from aliyun.log import LogClient

from devstack.kafka import free_port
from tests.sls_fixtures import pull_range

pytestmark = pytest.mark.slow  # starts the dev stack

REPO = Path(__file__).resolve().parents[2]


def sls_kafka(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processor", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=180, check=False)


def test_dev_seed_writes_lesson_vehicles_and_poison(tmp_path, monkeypatch):
    state = str(tmp_path / "stack")
    sls_port = free_port()
    assert sls_kafka("dev", "up", "--state-dir", state, "--kafka-port", str(free_port()),
                     "--sls-port", str(sls_port)).returncode == 0
    try:
        seeded = sls_kafka("dev", "seed", "--state-dir", state, "--records", "500", "--shards", "2")
        assert seeded.returncode == 0, seeded.stderr
        assert "wrote 506 logs (4 poison) to demo/driving" in seeded.stdout
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{sls_port}")
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{sls_port}")
        client = LogClient("cn-hangzhou.log.emulator", "k", "s")
        logs = []
        for shard in (0, 1):
            begin = client.get_begin_cursor("demo", "driving", shard).get_cursor()
            end = client.get_end_cursor("demo", "driving", shard).get_cursor()
            for resp in pull_range(client, "demo", "driving", shard, begin, end):
                logs.extend(resp.get_flatten_logs_json())
        assert len(logs) == 506
        contents = [log.get("content") for log in logs]
        assert sum(1 for c in contents if c and '"carID":1234' in c) == 1
    finally:
        sls_kafka("dev", "down", "--state-dir", state)
