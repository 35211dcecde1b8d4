"""Bad flags and settings fail the commands at once with exit 2 and a line naming them; LOG_LEVEL is obeyed.

Run as a user runs them: `python -m processor ...` in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.processor.commands_support import stack_fixture  # noqa: F401  (the `stack` fixture)

REPO = Path(__file__).resolve().parents[2]
CURSOR = "MTAw"  # base64 of the position 100


def _sls_kafka(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processor", *args], env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)


@pytest.mark.parametrize("timeout", ["-5", "0", "nan", "inf"])
def test_invoke_rejects_a_timeout_that_is_no_timeout(timeout, tmp_path):
    event = tmp_path / "event.json"
    event.write_bytes(orjson.dumps({"source": {"endpoint": "cn-hangzhou.log.emulator", "projectName": "demo",
                                               "logstoreName": "driving", "shardId": 0, "beginCursor": CURSOR,
                                               "endCursor": CURSOR}}))
    result = _sls_kafka("invoke", "--event", str(event), f"--timeout={timeout}", env=dict(os.environ))
    assert result.returncode == 2, result.stderr
    assert "--timeout" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flag", ["--write-rate", "--record-bytes", "--throughput"])
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_plan_rejects_infinite_and_nan_numbers(flag, value):
    args = ["plan", "--write-rate", "1000"] if flag != "--write-rate" else ["plan"]
    result = _sls_kafka(*args, flag, value, env=dict(os.environ))
    assert result.returncode == 2, result.stderr
    assert f"{value} must be a finite number" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_with_a_bad_producer_setting_exits_2_naming_it_instead_of_retrying(tmp_path):
    # An emulator-style endpoint through a proxy nobody listens on: SLS is never reached before the check.
    env = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
           "SLS_ENDPOINT": "cn-hangzhou.log.emulator", "SLS_PROJECT": "demo", "SLS_LOGSTORE": "driving",
           "ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret",
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "KAFKA_TOPIC": "vehicles", "CHECKPOINT_DIR": str(tmp_path),
           "KAFKA_PRODUCER_CONFIG": '{"compression.type": "bogus"}'}
    started = time.monotonic()
    result = _sls_kafka("run", "--once", env=env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 15
    assert "KAFKA_PRODUCER_CONFIG compression.type='bogus'" in result.stderr
    assert "Traceback" not in result.stderr


def _levels(stderr: str) -> set[str]:
    """Levels of the log lines (`<date> <time> LEVEL logger: message`)."""
    return {parts[2] for line in stderr.splitlines() if len(parts := line.split(" ", 3)) > 3
            and parts[2] in ("DEBUG", "INFO", "WARNING", "ERROR")}


def test_run_obeys_log_level(stack):
    stack.write(200)
    quiet = subprocess.run([sys.executable, "-m", "processor", "run", "--once", "--start", "begin"],
                           env={**stack.env, "LOG_LEVEL": "WARNING"}, capture_output=True, text=True, timeout=120,
                           check=False, cwd=REPO)
    assert quiet.returncode == 0, quiet.stderr
    assert stack.delivered() == Counter(stack.written)
    assert "INFO" not in _levels(quiet.stderr), quiet.stderr
    stack.write(200)
    chatty = stack.cli("run", "--once")
    assert chatty.returncode == 0, chatty.stderr
    assert "INFO" in _levels(chatty.stderr)


def test_backfill_obeys_log_level(stack):
    stack.write(200)
    quiet = subprocess.run([sys.executable, "-m", "processor", "backfill", "--dry-run"],
                           env={**stack.env, "LOG_LEVEL": "WARNING"}, capture_output=True, text=True, timeout=120,
                           check=False, cwd=REPO)
    assert quiet.returncode == 0, quiet.stderr
    assert len(quiet.stdout.splitlines()) == 200
    assert "INFO" not in _levels(quiet.stderr), quiet.stderr
    debug = subprocess.run([sys.executable, "-m", "processor", "backfill", "--dry-run"],
                           env={**stack.env, "LOG_LEVEL": "DEBUG"}, capture_output=True, text=True, timeout=120,
                           check=False, cwd=REPO)
    assert debug.returncode == 0, debug.stderr
    assert "DEBUG" in _levels(debug.stderr)
