"""Pipeline health: invocations that failed after their retries, read from the SLS trigger's own log.

A function deployed on the local cloud fails; its trigger retries each delivery `maxRetryTime` times and logs
every attempt in its `logConfig` logstore, as FC's SLS trigger does. The evaluator reads that log through the SDK
and alerts per function and shard; the expected count is taken from the trigger log independently."""

import os
import time

import orjson
import pytest
from aliyun.log import LogItem, PutLogsRequest

from alerting.channel_config import FileChannel
from alerting.evaluator import Evaluator, EvaluatorConfig
from alerting.failures import TriggerLog
from alerting.rules import RulesError, parse_rules
from common.errors import ConfigError
from processor.cli import main
from tests.alerting.support import alert_stack
from tests.devstack.fc.conftest import local_cloud  # noqa: F401  (the local cloud's fixture)
from tests.devstack.fc.fc_support import small_function, write_s_yaml
from tests.pipeline_support import put_groups
from tests.sls_fixtures import pull_range
from tests.waiting import wait_for

RULES = """\
evaluator: {grace: 5s}
rules:
  - name: failed-invocations
    type: failed_invocations
    description: invocations failed after their retries
    logstore: trigger-log
    window: 20s
    threshold: "> 0"
    severity: critical
"""

# Fails while `always` exists; after that each delivery's first attempt fails and its retry succeeds.
FLAKY = """\
import json
import os

def handler(event, context):
    if os.path.exists({always!r}):
        raise RuntimeError('no Kafka today')
    seen = os.path.join({seen!r}, json.loads(event)['taskId'])
    if not os.path.exists(seen):
        open(seen, 'w').close()
        raise RuntimeError('Kafka blinked')
    return 'ok'
"""


def attempts(client, project):
    """Every record of the trigger log with its time, read with the SDK apart from the code under test."""
    records = []
    for shard in client.list_shards(project, "trigger-log").get_shards_info():
        sid = shard["shardID"]
        begin = client.get_begin_cursor(project, "trigger-log", sid).get_cursor()
        end = client.get_end_cursor(project, "trigger-log", sid).get_cursor()
        for response in pull_range(client, project, "trigger-log", sid, begin, end):
            records += response.get_flatten_logs_json()
    return records


def failed_tasks(records):
    """taskId -> its attempts, for the deliveries none of whose attempts succeeded."""
    tasks = {}
    for r in records:
        tasks.setdefault(r["taskId"], []).append(r)
    return {t: rs for t, rs in tasks.items() if all(r["status"] == "failed" for r in rs)}


def test_failed_invocations_fire_once_with_count_and_details_then_resolve(
        local_cloud, kafka, topic_factory, tmp_path, function_env, sls_client, sls_project,  # noqa: F811
        sls_proxy_env):
    stack = alert_stack(RULES, kafka, topic_factory, tmp_path, function_env)
    sls_client.create_logstore(sls_project, "src", ttl=1, shard_count=1)
    sls_client.create_logstore(sls_project, "trigger-log", ttl=1, shard_count=1)
    always, seen = tmp_path / "always-fail", tmp_path / "seen"
    always.touch()
    seen.mkdir()
    trigger = {"triggerName": "t", "triggerType": "log", "sourceArn": f"acs:log:cn-hangzhou:1:project/{sls_project}",
               "triggerConfig": {"enable": True, "sourceConfig": {"logstore": "src"},
                                 "jobConfig": {"triggerInterval": 3, "maxRetryTime": 2},
                                 "logConfig": {"project": sls_project, "logstore": "trigger-log"}}}
    props = small_function(tmp_path / "flaky", FLAKY.format(always=str(always), seen=str(seen)), triggers=[trigger])
    local_cloud.deploy(write_s_yaml(tmp_path / "s.yaml", {"flaky": props}), {})

    rules = parse_rules(RULES)
    source = TriggerLog(rules, {**os.environ, "SLS_ENDPOINT": sls_proxy_env, "SLS_PROJECT": sls_project})
    config = EvaluatorConfig({"bootstrap.servers": kafka.bootstrap}, stack.partials, stack.state, stack.history)
    evaluator = Evaluator(rules, config, {"file": FileChannel(stack.sent_path)}, stack.clock,
                          read_failures=source.failures)
    stack.clock.now = time.time()
    evaluator.tick()  # windows from here on are judged

    put_groups(sls_client, sls_project, "src", [[{"content": "{}"}]])
    wait_for(lambda: len(failed_tasks(attempts(sls_client, sls_project))) >= 2, 20, "two failed deliveries")
    always.unlink()
    wait_for(lambda: any(r["status"] == "success" for r in attempts(sls_client, sls_project)), 20,
             "a delivery that succeeds")
    log = attempts(sls_client, sls_project)
    failed = failed_tasks(log)
    assert all(len(rs) == 3 for rs in failed.values())  # each failed after its two retries
    assert any(r["status"] == "failed" for r in log if r["taskId"] not in failed)  # a retry that made it

    end = max(int(r["__time__"]) for r in log)
    while stack.clock.now < end + 2 * 20 + 5:
        stack.clock.now += 10
        evaluator.tick()
    evaluator.close()
    source.close()

    firing, resolved = stack.sent()
    assert (firing["transition"], resolved["transition"]) == ("firing", "resolved")
    assert firing["labels"] == resolved["labels"] == {"function": "flaky", "shard": "0"}
    in_window = {t: rs for t, rs in failed.items()
                 if firing["window_start"] <= min(int(r["__time__"]) for r in rs) < firing["window_end"]}
    assert firing["value"] == len(in_window) > 0
    assert (firing["comparison"], firing["threshold"]) == (">", 0)
    named = ("function", "shardId", "status", "attempt", "errorType", "errorMessage", "requestId")
    last_attempts = {tuple(rs[-1][k] for k in named) for rs in in_window.values()}
    details = [orjson.loads(s["record"]) for s in firing["samples"]]
    assert len(details) == min(len(in_window), 5)
    assert {tuple(d[k] for k in named) for d in details} <= last_attempts
    assert ("flaky", "0", "failed", "2", "RuntimeError", "no Kafka today") in {d[:6] for d in last_attempts}
    assert {(s["project"], s["logstore"]) for s in firing["samples"]} == {(sls_project, "trigger-log")}
    assert resolved["value"] == 0
    assert resolved["window_start"] >= firing["window_end"]


def log_attempt(client, project, clock, at, task, shard, attempt, status):
    """One record of the trigger's log as devstack/fc/trigger.py writes it, received at `at`."""
    clock.now = at
    fields = {"trigger": "t", "function": "flaky", "jobName": "job", "taskId": task, "shardId": str(shard),
              "beginCursor": "MA==", "endCursor": "MQ==", "attempt": str(attempt), "status": status,
              "requestId": f"{task}-{attempt}", "instanceId": "i", "latencyMs": "3",
              "errorType": "" if status == "success" else "RuntimeError",
              "errorMessage": "" if status == "success" else "no Kafka today"}
    client.put_logs(PutLogsRequest(project, "trigger-log", "fc_trigger", "fc-local",
                                   [LogItem(at, list(fields.items()))]))


def test_a_delivery_is_judged_whole_in_the_window_of_its_first_attempt(kafka, topic_factory, tmp_path, function_env,
                                                                       sls_client, sls_project, sls_proxy_env,
                                                                       sls_clock):
    stack = alert_stack(RULES, kafka, topic_factory, tmp_path, function_env)
    sls_client.create_logstore(sls_project, "trigger-log", ttl=1, shard_count=1)
    t0 = int(sls_clock.now) - int(sls_clock.now) % 20 + 20
    log_attempt(sls_client, sls_project, sls_clock, t0 + 2, "a", 0, 0, "failed")
    log_attempt(sls_client, sls_project, sls_clock, t0 + 2, "a", 0, 1, "failed")
    log_attempt(sls_client, sls_project, sls_clock, t0 + 19, "b", 0, 0, "failed")  # retried after the window:
    log_attempt(sls_client, sls_project, sls_clock, t0 + 19, "c", 1, 0, "failed")
    log_attempt(sls_client, sls_project, sls_clock, t0 + 21, "b", 0, 1, "success")  # succeeds: not counted
    log_attempt(sls_client, sls_project, sls_clock, t0 + 21, "c", 1, 1, "failed")  # fails: counted once, at t0+19
    rules = parse_rules(RULES)
    source = TriggerLog(rules, {**os.environ, "SLS_ENDPOINT": sls_proxy_env, "SLS_PROJECT": sls_project})
    config = EvaluatorConfig({"bootstrap.servers": kafka.bootstrap}, stack.partials, stack.state, stack.history)
    evaluator = Evaluator(rules, config, {"file": FileChannel(stack.sent_path)}, stack.clock,
                          read_failures=source.failures)
    stack.clock.now = t0 - 1
    evaluator.tick()
    stack.clock.now = t0 + 60
    evaluator.tick()
    evaluator.close()
    source.close()

    sent = [(n["transition"], n["labels"]["shard"], n["value"], n["window_start"],
             [orjson.loads(s["record"])["requestId"] for s in n["samples"]]) for n in stack.sent()]
    assert sent == [("firing", "0", 1, t0, ["a-1"]), ("firing", "1", 1, t0, ["c-1"]),
                    ("resolved", "0", 0, t0 + 20, []), ("resolved", "1", 0, t0 + 20, [])]


def test_a_failed_invocations_rule_with_a_mistake_is_refused_naming_rule_key_and_line():
    with pytest.raises(RulesError, match=r"^<rules>:7: rule 'failed-invocations': key 'window': expected a "
                                         r"duration like 30s"):
        parse_rules(RULES.replace("window: 20s", "window: soon"))
    with pytest.raises(RulesError, match=r"<rules>:10: rule 'failed-invocations' \(type failed_invocations\): "
                                         r"unknown key 'field'"):
        parse_rules(RULES + "    field: speed\n")


def test_alerts_check_describes_where_the_rule_reads(tmp_path, capsys):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.replace("    logstore: trigger-log\n", ""))
    assert main(["alerts", "check", str(path)]) == 0
    assert ("failed-invocations [failed_invocations, critical]: failed invocations per function and shard in "
            "$SLS_PROJECT/$SLS_TRIGGER_LOGSTORE over 20 s > 0") in capsys.readouterr().out


def test_the_evaluator_refuses_a_failed_invocations_rule_it_cannot_read(kafka):
    rules = parse_rules(RULES)
    with pytest.raises(ConfigError, match=r"rule 'failed-invocations' watches the trigger's log, but the "
                                          r"evaluator has no SLS to read it"):
        Evaluator(rules, EvaluatorConfig({"bootstrap.servers": kafka.bootstrap}), {})
    with pytest.raises(ConfigError, match=r"^rule 'failed-invocations' gives no 'project' of the trigger's log, "
                                          r"so it reads SLS_PROJECT: set SLS_ENDPOINT, SLS_PROJECT$"):
        TriggerLog(rules, {})
    with pytest.raises(ConfigError, match=r"^rule 'failed-invocations' gives no 'logstore' of the trigger's log, "
                                          r"so it reads SLS_TRIGGER_LOGSTORE: set SLS_ENDPOINT, SLS_PROJECT, "
                                          r"SLS_TRIGGER_LOGSTORE$"):
        TriggerLog(parse_rules(RULES.replace("    logstore: trigger-log\n", "")), {})
