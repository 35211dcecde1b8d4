"""`sls-kafka dev deploy` / `dev logs` / `dev down` as a user runs them (subprocesses, the session's emulator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from devstack.kafka import free_port
from tests.devstack.fc.fc_support import process_alive, small_function, write_s_yaml
from tests.pipeline_support import put_groups
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

ECHO = "def handler(event, context):\n    print('handled', len(event), 'bytes')\n    return 'ok'\n"


def cli(*args, timeout=90):
    env = {**os.environ, "ALIBABA_CLOUD_ACCESS_KEY_ID": SLS_ACCESS_KEY_ID,
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SLS_ACCESS_KEY_SECRET}
    return subprocess.run([sys.executable, "-m", "processor", "dev", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def test_deploy_logs_and_down(tmp_path, sls_client, sls_project, sls_proxy_env):
    sls_client.create_logstore(sls_project, "src", ttl=1, shard_count=2)
    trigger = {"triggerName": "t", "triggerType": "log", "sourceArn": f"acs:log:cn-hangzhou:1:project/{sls_project}",
               "triggerConfig": {"sourceConfig": {"logstore": "src"},
                                 "jobConfig": {"triggerInterval": 3, "maxRetryTime": 1}}}
    s_yaml = write_s_yaml(tmp_path / "s.yaml", {"echo": small_function(tmp_path / "echo", ECHO, triggers=[trigger])})
    state = str(tmp_path / "state")

    deployed = cli("deploy", str(s_yaml), "--state-dir", state, "--fc-port", str(free_port()))
    assert deployed.returncode == 0, deployed.stderr
    assert "echo: python3.10 index.handler, timeout 5s; t every 3s on" in deployed.stdout
    host = json.loads((tmp_path / "state" / "fc" / "host.json").read_text())
    try:
        put_groups(sls_client, sls_project, "src", [[{"content": "{}"}]])
        lines = wait_for(lambda: [line for line in cli("logs", "--state-dir", state).stdout.splitlines()
                                  if "[TRIGGER]" in line], 15, "the trigger's invocation in the logs")
        assert ": success" in lines[0]
        request_id = lines[0].split()[1]
        one = cli("logs", "echo", "--request-id", request_id, "--state-dir", state).stdout.splitlines()
        assert one[0] == "== echo"
        assert all(line.split()[1] == request_id for line in one[1:])
        assert any("[INFO] handled" in line for line in one)
    finally:
        down = cli("down", "--state-dir", state)
    assert "fc: the local cloud stopped" in down.stdout
    assert not process_alive(host["pid"])


def test_a_bad_s_yaml_is_refused_with_exit_2_and_nothing_replaced(tmp_path):
    props = small_function(tmp_path / "f", ECHO, timeout="${env(NO_SUCH_VARIABLE_FOR_SURE)}")
    result = cli("deploy", str(write_s_yaml(tmp_path / "s.yaml", {"f": props})), "--state-dir",
                 str(tmp_path / "state"))
    assert result.returncode == 2
    assert "environment variable NO_SUCH_VARIABLE_FOR_SURE is not set" in result.stderr
    assert not (tmp_path / "state" / "fc" / "host.json").exists()
