"""`sls-kafka dev up|status|down`, run as a user would: through `python -m processor`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import stack
from devstack.cli import EXIT_DOWN
from devstack.kafka import free_port
from devstack.processes import ProcessRef, cmdline

pytestmark = pytest.mark.slow  # starts the dev stack

REPO = Path(__file__).resolve().parents[2]


def dev(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processor", "dev", *args, "--state-dir", str(state_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=180,
        check=False,
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh state dir whose services are stopped after the test, whatever happened."""
    path = tmp_path / "dev"
    yield path
    stack.down(path)


def test_dev_up_twice_status_down_runs_one_copy_then_nothing(state_dir):
    kafka_port, sls_port, smtp_port, smtp_tls_port = free_port(), free_port(), free_port(), free_port()
    ports = ("--kafka-port", str(kafka_port), "--sls-port", str(sls_port),
             "--smtp-port", str(smtp_port), "--smtp-tls-port", str(smtp_tls_port))

    first = dev("up", *ports, state_dir=state_dir)
    assert first.returncode == 0, first.stderr
    assert f"127.0.0.1:{kafka_port}" in first.stdout
    assert f"HTTP_PROXY=http://127.0.0.1:{sls_port}" in first.stdout
    assert f"SMTP on 127.0.0.1:{smtp_port} (STARTTLS offered), implicit TLS on 127.0.0.1:{smtp_tls_port}" in (
        first.stdout)
    recorded = json.loads((state_dir / "state.json").read_text())
    processes = {name: ProcessRef(svc["pid"], svc["start_ticks"]) for name, svc in recorded.items()}
    assert set(processes) == {"kafka", "sls", "smtp"}
    assert all(p.is_running() for p in processes.values())

    second = dev("up", *ports, state_dir=state_dir)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already running") == 3
    assert json.loads((state_dir / "state.json").read_text()) == recorded

    up_status = dev("status", state_dir=state_dir)
    assert up_status.returncode == 0, up_status.stdout
    assert f"port {kafka_port}" in up_status.stdout
    assert f"port {sls_port}" in up_status.stdout
    assert f"port {smtp_port}" in up_status.stdout

    down = dev("down", state_dir=state_dir)
    assert down.returncode == 0, down.stderr
    assert down.stdout.count("stopped") == 3
    assert not any(p.is_running() for p in processes.values())

    down_status = dev("status", state_dir=state_dir)
    assert down_status.returncode == EXIT_DOWN
    assert down_status.stdout.count("not running") == 3


def test_dev_down_leaves_a_process_that_reused_a_recorded_pid(state_dir):
    state_dir.mkdir(parents=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ref = ProcessRef.of(stranger.pid)
        record = {
            "name": "kafka",
            "pid": ref.pid,
            "start_ticks": ref.start_ticks,
            "port": free_port(),
            "cmdline_marker": "kafka.Kafka /nowhere/server.properties",
            "log": "/nowhere/broker.log",
        }
        (state_dir / "state.json").write_text(json.dumps({"kafka": record}))

        result = dev("down", state_dir=state_dir)

        assert result.returncode == 0, result.stderr
        assert "kafka: was not running" in result.stdout
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_dev_up_port_taken_fails_and_leaves_nothing_running(state_dir, kafka):
    if not hasattr(kafka, "port"):
        pytest.fail("needs the suite's own broker to occupy a known port")
    result = dev("up", "--kafka-port", str(free_port()), "--sls-port", str(kafka.port),
                 "--smtp-port", str(free_port()), "--smtp-tls-port", str(free_port()), state_dir=state_dir)

    assert result.returncode == 1
    assert f"port {kafka.port} is already in use" in result.stderr
    assert all(svc is None for svc in stack.status(state_dir).values())
    assert _processes_mentioning(state_dir) == []


def _processes_mentioning(path: Path) -> list[int]:
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [pid for pid in pids if str(path) in cmdline(pid)]
