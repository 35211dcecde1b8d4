"""The README's main job: `sls-kafka demo` on its own stack, checked by its own read-back."""

import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from devstack.kafka import free_port

pytestmark = pytest.mark.slow  # the demo starts the whole dev stack in subprocesses

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_the_whole_path_and_stops_its_stack(tmp_path):
    state = tmp_path / "stack"
    proc = subprocess.run(
        [sys.executable, "-m", "processor", "demo", "--records", "300", "--intervals", "2", "--interval", "0.5",
         "--kafka-port", str(free_port()), "--sls-port", str(free_port()), "--state-dir", str(state)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lesson = """the lesson's two lines arrived as: ['{"speed":12,"carID":1234}', '{"speed":24,"carID":3512}']"""
    assert lesson in out
    assert "602 good records written, 602 delivered, 0 missing, 0 duplicated; 8 poison written, 8 dead-lettered: OK" \
        in out
    assert "stopped the local stack" in out
    assert not (state / "state.json").exists()


def test_demo_again_on_a_running_stack_reuses_its_topics_and_checks_only_its_own_records(tmp_path):
    state = tmp_path / "stack"
    kafka_port = free_port()
    args = [sys.executable, "-m", "processor", "demo", "--records", "100", "--intervals", "1", "--interval", "0.5",
            "--kafka-port", str(kafka_port), "--sls-port", str(free_port()), "--state-dir", str(state)]
    try:
        runs = [subprocess.run([*args, "--keep-stack"], cwd=REPO, capture_output=True, text=True, timeout=240,
                               check=False) for _ in range(2)]
        for proc in runs:
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "== Kafka topic vehicles-demo: 102 records from this run (read_committed)" in proc.stdout
            assert "102 good records written, 102 delivered, 0 missing, 0 duplicated; 4 poison written, " \
                "4 dead-lettered: OK" in proc.stdout
        assert f"kafka: 127.0.0.1:{kafka_port} (already running)" in runs[1].stdout
        topics = AdminClient({"bootstrap.servers": f"127.0.0.1:{kafka_port}"}).list_topics(timeout=10).topics
        assert sorted(t for t in topics if t.startswith("vehicles")) == ["vehicles-demo", "vehicles-demo.dlq"]
    finally:
        subprocess.run([sys.executable, "-m", "processor", "dev", "down", "--state-dir", str(state)], cwd=REPO,
                       capture_output=True, timeout=120, check=False)
