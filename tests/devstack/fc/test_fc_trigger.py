"""The repository's s.yaml deployed to the local cloud: its SLS trigger drives the packaged function (python3.10)."""

from __future__ import annotations

import itertools
import random
import shutil
import statistics
import time
from collections import Counter

import orjson

from devstack.kafka import create_topics
from tests.devstack.fc.fc_support import (
    first_call_differs,
    process_alive,
    repo_env,
    small_function,
    trigger_log,
    write_s_yaml,
)
from tests.kafka_helpers import read_all
from tests.pipeline_support import chunks, driving_record, json_contents, put_groups
from tests.waiting import wait_for

INTERVAL = 3


def make_logstores(client, project, shards=4):
    client.create_logstore(project, "driving", ttl=1, shard_count=shards)
    client.create_logstore(project, "trigger-log", ttl=1, shard_count=1)


def test_s_yaml_deployed_locally_delivers_an_exact_multiset_through_the_trigger(
        local_cloud, repo_s_yaml, sls_client, sls_project, kafka, topic_factory):
    make_logstores(sls_client, sls_project)
    topic = topic_factory(partitions=3)
    create_topics(kafka.bootstrap, [f"{topic}.dlq"])
    [deployment] = local_cloud.deploy(repo_s_yaml(triggerInterval=INTERVAL, timeout=30),
                                      repo_env(kafka.bootstrap, topic, sls_project, "driving", "trigger-log"))
    assert deployment.python.name == "python3.10"
    rng = random.Random(12)
    records = [driving_record(i, rng) for i in range(3000)]
    # Written over several intervals, so more than one trigger event per shard carries them.
    for part in chunks(records, 1000):
        put_groups(sls_client, sls_project, "driving", (json_contents(g) for g in chunks(part, 50)))
        time.sleep(INTERVAL)
    expected = Counter(orjson.dumps({"speed": r["speed"], "carID": r["carID"]}) for r in records)

    got = wait_for(lambda: (r := read_all(kafka.bootstrap, topic, idle=0.5)) and len(r) >= len(records) and r,
                   60, "every record in Kafka", every=1.0)
    assert Counter(r.value for r in got) == expected
    log = trigger_log(sls_client, sls_project, "trigger-log")
    assert log
    assert all(r["status"] == "success" for r in log)
    assert {r["shardId"] for r in log} == {"0", "1", "2", "3"}
    ticks = local_cloud.triggers[deployment.spec.name][0].ticks
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    print(f"trigger cadence: interval {INTERVAL} s, measured {statistics.mean(gaps):.3f} s mean, "
          f"{min(gaps):.3f}-{max(gaps):.3f} s over {len(gaps)} gaps")
    assert abs(statistics.mean(gaps) - INTERVAL) < 0.2


def test_an_invocation_past_its_timeout_is_killed_and_the_retry_finishes_the_range(
        local_cloud, repo_s_yaml, fc_code_zip, tmp_path, sls_client, sls_project, kafka, topic_factory):
    """The first attempt hangs (a wrapper around the packaged handler) and is killed at the FC timeout."""
    make_logstores(sls_client, sls_project, shards=1)
    topic = topic_factory()
    create_topics(kafka.bootstrap, [f"{topic}.dlq"])
    code, marker = first_call_differs(fc_code_zip, tmp_path, "hang_once", "time.sleep(600)",
                                      "'%d %d.%d' % (os.getpid(), *sys.version_info[:2])")
    env = repo_env(kafka.bootstrap, topic, sls_project, "driving", "trigger-log")
    local_cloud.deploy(repo_s_yaml(code=code, handler="hang_once.handler", triggerInterval=INTERVAL, timeout=8,
                                   maxRetryTime=2), env)
    records = [driving_record(i, random.Random(3)) for i in range(500)]
    put_groups(sls_client, sls_project, "driving", (json_contents(g) for g in chunks(records, 50)))

    got = wait_for(lambda: (r := read_all(kafka.bootstrap, topic, idle=0.5)) and len(r) >= len(records) and r,
                   60, "the range delivered by the retry", every=1.0)
    assert Counter(r.value for r in got) == Counter(
        orjson.dumps({"speed": r["speed"], "carID": r["carID"]}) for r in records)
    pid, version = marker.read_text().split()
    assert version == "3.10"
    assert not process_alive(pid)
    log = trigger_log(sls_client, sls_project, "trigger-log")
    first, retry = log[0], log[1]
    assert first["status"] == "failed"
    assert first["errorMessage"] == "Function timed out after 8 seconds"
    assert (retry["status"], retry["attempt"], retry["taskId"]) == ("success", "1", first["taskId"])
    shutil.rmtree(code)


def test_redeploying_with_another_trigger_interval_changes_the_cadence(local_cloud, tmp_path, sls_client,
                                                                       sls_project):
    sls_client.create_logstore(sls_project, "src", ttl=1, shard_count=1)
    code = tmp_path / "idle"
    cadence = {}
    for interval in (3, 4):
        trigger = {"triggerName": "t", "triggerType": "log",
                   "sourceArn": f"acs:log:cn-hangzhou:1:project/{sls_project}",
                   "triggerConfig": {"sourceConfig": {"logstore": "src"},
                                     "jobConfig": {"triggerInterval": interval, "maxRetryTime": 0}}}
        props = small_function(code, "def handler(event, context):\n    return 'ok'\n", triggers=[trigger])
        local_cloud.deploy(write_s_yaml(tmp_path / "s.yaml", {"idle": props}), {})
        [trigger_] = local_cloud.triggers["idle"]
        wait_for(lambda t=trigger_: len(t.ticks) >= 3, interval * 3 + 2, f"three ticks at {interval} s")
        cadence[interval] = statistics.mean(b - a for a, b in itertools.pairwise(trigger_.ticks))
    print(f"trigger cadence after redeploys: {cadence}")
    assert abs(cadence[3] - 3) < 0.2
    assert abs(cadence[4] - 4) < 0.2
