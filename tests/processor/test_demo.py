"""The README's main job: `sls-kafka demo` on its own stack, checked by its own read-back."""

import subprocess
import sys
from pathlib import Path

import pytest

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
