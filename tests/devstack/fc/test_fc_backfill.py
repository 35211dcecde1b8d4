"""`sls-kafka backfill --via-fc`: a 4-shard job fanned out to the deployed function through the official SDK."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter

import orjson
import pytest

from devstack.fc.api import FcApiServer
from devstack.kafka import create_topics
from tests.devstack.fc.fc_support import first_call_differs, repo_env
from tests.kafka_helpers import read_all
from tests.pipeline_support import chunks, driving_record, json_contents, put_groups
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET

FIELDS = "speed:number,carID:int,seq:int"


@pytest.mark.parametrize("mode", ["exactly-once", "at-least-once"])
def test_a_four_shard_backfill_through_fc_delivers_over_several_instances(
        mode, local_cloud, repo_s_yaml, sls_client, sls_project, sls_proxy_env, kafka, topic_factory):
    sls_client.create_logstore(sls_project, "driving", ttl=7, shard_count=4)
    sls_client.create_logstore(sls_project, "trigger-log", ttl=1, shard_count=1)
    topic = topic_factory(partitions=3)
    create_topics(kafka.bootstrap, [f"{topic}.dlq"])
    rng = random.Random(4)
    records = [driving_record(i, rng) for i in range(6000)]
    put_groups(sls_client, sls_project, "driving", (json_contents(g) for g in chunks(records, 20)))
    env = repo_env(kafka.bootstrap, topic, sls_project, "driving", "trigger-log")
    function_env = {"DELIVERY_MODE": mode, "PROJECTION_FIELDS": FIELDS,
                    "CHECKPOINT_STORE": "kafka" if mode == "exactly-once" else "sls"}
    [deployment] = local_cloud.deploy(repo_s_yaml(environment=function_env), env)
    api = FcApiServer(local_cloud.host, local_cloud.secrets).start()
    # The command shares the function's checkpoint settings (s.yaml: the `sls` store, or Kafka's in exactly-once).
    cli_env = {**os.environ, **env, **deployment.spec.env, "SLS_ENDPOINT": sls_proxy_env,
               "ALIBABA_CLOUD_ACCESS_KEY_ID": SLS_ACCESS_KEY_ID,
               "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SLS_ACCESS_KEY_SECRET, "FC_ENDPOINT": api.endpoint}
    command = [sys.executable, "-m", "processor", "backfill", "--via-fc", deployment.spec.name, "--from", "begin",
               "--to", "end", "--groups-per-event", "25", "--json"]
    try:
        first = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=180, check=False)
        again = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=60, check=False)
    finally:
        api.stop()

    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout)
    assert summary["complete"]
    assert summary["log_groups_done"] == summary["log_groups_total"] == 300
    assert [s["events_total"] for s in summary["shards"]] == [3, 3, 3, 3]
    expected = Counter(orjson.dumps({k: r[k] for k in ("speed", "carID", "seq")}) for r in records)
    got = Counter(r.value for r in read_all(kafka.bootstrap, topic, timeout=60))
    if mode == "exactly-once":
        assert got == expected
    else:
        assert set(got) == set(expected)
    assert local_cloud.host.pools[deployment.spec.name].started >= 2
    assert again.returncode == 0
    assert json.loads(again.stdout)["already_complete"]


def test_an_event_whose_checkpoint_stalls_is_sent_again(local_cloud, repo_s_yaml, fc_code_zip, tmp_path, sls_client,
                                                        sls_project, sls_proxy_env, kafka, topic_factory):
    """The first invocation succeeds without delivering anything (lost work, as far as the job can see)."""
    sls_client.create_logstore(sls_project, "driving", ttl=7, shard_count=1)
    sls_client.create_logstore(sls_project, "trigger-log", ttl=1, shard_count=1)
    topic = topic_factory()
    create_topics(kafka.bootstrap, [f"{topic}.dlq"])
    records = [driving_record(i, random.Random(5)) for i in range(300)]
    put_groups(sls_client, sls_project, "driving", (json_contents(g) for g in chunks(records, 30)))
    code, marker = first_call_differs(fc_code_zip, tmp_path, "skip_once", "return 'skipped'", "context.request_id")
    env = repo_env(kafka.bootstrap, topic, sls_project, "driving", "trigger-log")
    [deployment] = local_cloud.deploy(repo_s_yaml(code=code, handler="skip_once.handler",
                                                  environment={"PROJECTION_FIELDS": FIELDS}), env)
    api = FcApiServer(local_cloud.host, local_cloud.secrets).start()
    cli_env = {**os.environ, **env, **deployment.spec.env, "SLS_ENDPOINT": sls_proxy_env,
               "ALIBABA_CLOUD_ACCESS_KEY_ID": SLS_ACCESS_KEY_ID,
               "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SLS_ACCESS_KEY_SECRET, "FC_ENDPOINT": api.endpoint}
    try:
        result = subprocess.run([sys.executable, "-m", "processor", "backfill", "--via-fc", deployment.spec.name,
                                 "--fc-stall-seconds", "2", "--json"], env=cli_env, capture_output=True, text=True,
                                timeout=120, check=False)
    finally:
        api.stop()

    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["complete"]
    assert "did not move for 2s" in result.stderr
    assert marker.read_text() in result.stderr  # the stalled request is named
    got = Counter(r.value for r in read_all(kafka.bootstrap, topic))
    assert got == Counter(orjson.dumps({k: r[k] for k in ("speed", "carID", "seq")}) for r in records)
