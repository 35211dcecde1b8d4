"""Alerts end to end, continued: exactly-once partials, racing instances, records past the late horizon, and the
pipeline-health rules (dead-letter rate, lag)."""

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from aliyun.log import LogItem, PutLogsRequest

from alerting.channel_config import FileChannel
from alerting.evaluator import Evaluator, EvaluatorConfig
from alerting.lag import LagSource
from alerting.rules import parse_rules
from processor.cli import main
from processor.credentials import Credentials
from processor.event import TriggerEvent
from processor.runtime import Runtime
from tests.alerting.support import alert_stack, make_logstore, window_start
from tests.alerting.test_alerts_e2e import TUMBLING_BURST
from tests.kafka_helpers import read_all
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET


def the_one_notification(stack, t0: int, judged_at: int) -> dict:
    """An evaluator that starts before the window and judges it at `judged_at` sends exactly one notification."""
    stack.clock.now = t0 - 1
    evaluator = stack.evaluator()
    evaluator.tick()
    stack.clock.now = judged_at
    evaluator.tick()
    evaluator.close()
    [firing] = stack.sent()
    return firing


@pytest.fixture
def logstore(sls_client, sls_proxy_env, sls_project):
    return make_logstore(sls_client, sls_proxy_env, sls_project)


def test_exactly_once_partials_are_committed_with_their_pages(kafka, topic_factory, tmp_path, function_env, logstore):
    checkpoints = topic_factory(config={"cleanup.policy": "compact"})
    stack = alert_stack(TUMBLING_BURST, kafka, topic_factory, tmp_path, function_env,
                        {"DELIVERY_MODE": "exactly-once", "KAFKA_CHECKPOINT_TOPIC": checkpoints})
    t0 = window_start(300)
    for shard in range(4):
        logstore.put(shard, [({"speed": 130, "carID": i, "zone": "z"}, t0 + i) for i in range(20)])
    logstore.deliver()
    # The evaluator reads read_committed: the partials were committed in the pages' transactions.
    assert len(read_all(kafka.bootstrap, stack.partials)) == 4
    firing = the_one_notification(stack, t0, judged_at=t0 + 360)
    assert firing["value"] == 80


DEAD_LETTERS = """\
evaluator: {grace: 1m}
rules:
  - name: dead-letter-rate
    type: window
    aggregate: dead_letter_rate
    window: 1m
    threshold: "> 5"
"""


def test_the_dead_letter_rate_fires_with_the_share_of_logs_dead_lettered(kafka, topic_factory, tmp_path,
                                                                        function_env, logstore):
    stack = alert_stack(DEAD_LETTERS, kafka, topic_factory, tmp_path, function_env)
    t0 = window_start(60)
    for shard in range(4):
        good = [({"speed": 50, "carID": i, "zone": "z"}, t0 + i) for i in range(25)]
        logstore.put(shard, good)
        if shard % 2:
            items = [LogItem(timestamp=t0 + 30, contents=[("content", "{not json")]) for _ in range(5)]
            logstore.client.put_logs(PutLogsRequest(logstore.project, logstore.name, "", "src", items,
                                                    hashKey=logstore.hash_keys[shard]))
    summaries = logstore.deliver()
    assert sum(s["dead_lettered"] for s in summaries) == 10
    firing = the_one_notification(stack, t0, judged_at=t0 + 120)
    assert firing["value"] == pytest.approx(100 * 10 / 110)


def test_records_older_than_the_late_horizon_are_reported_not_counted(kafka, topic_factory, tmp_path, function_env,
                                                                     logstore, capsys, monkeypatch):
    stack = alert_stack(TUMBLING_BURST.replace("late_horizon: 1h", "late_horizon: 0s"), kafka, topic_factory,
                        tmp_path, function_env)
    t0 = window_start(300, ago=3 * 3600)
    stack.clock.now = t0 + 3 * 3600
    evaluator = stack.evaluator()
    evaluator.tick()
    logstore.put(0, [({"speed": 130, "carID": i, "zone": "z"}, t0 + i) for i in range(60)])
    logstore.deliver()
    stack.clock.now += 60
    evaluator.tick()
    evaluator.close()
    assert stack.sent() == []
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap)
    monkeypatch.setenv("ALERT_HISTORY_TOPIC", stack.history)
    assert main(["alerts", "history"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert " * too_late " in line
    assert f"60 rule match(es) in {logstore.project}/driving/0/" in line
    assert line.endswith(" older than the late horizon")


def test_two_instances_racing_on_the_same_ranges_count_each_record_once(kafka, topic_factory, tmp_path,
                                                                       function_env, logstore):
    stack = alert_stack(TUMBLING_BURST, kafka, topic_factory, tmp_path, function_env)
    t0 = window_start(300)
    for shard in range(4):
        logstore.put(shard, [({"speed": 130, "carID": i, "zone": "z"}, t0 + i) for i in range(30)])
    events = [TriggerEvent.from_json(ev) for ev in logstore.new_events()]
    instances = [Runtime.from_env({**os.environ, "CHECKPOINT_DIR": str(tmp_path / f"instance-{i}")})
                 for i in range(2)]
    creds = Credentials(SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET, None)
    with ThreadPoolExecutor(2) as pool:
        summaries = list(pool.map(lambda rt: [rt.process(ev, creds) for ev in events], instances))
    for runtime in instances:
        runtime.close()
    assert [sum(s.produced for s in run) for run in summaries] == [120, 120]  # both delivered everything
    firing = the_one_notification(stack, t0, judged_at=t0 + 360)
    assert firing["value"] == 120


LAG = """\
rules:
  - name: lagging
    type: lag
    threshold: "> 300"
"""


def test_lag_fires_when_a_shard_falls_behind_and_resolves_when_it_catches_up(kafka, topic_factory, tmp_path,
                                                                            function_env, logstore, sls_clock):
    stack = alert_stack(LAG, kafka, topic_factory, tmp_path, function_env)
    lag = LagSource({**os.environ, "SLS_ENDPOINT": logstore.endpoint, "SLS_PROJECT": logstore.project,
                     "SLS_LOGSTORE": logstore.name})
    rules = parse_rules(LAG)
    config = EvaluatorConfig({"bootstrap.servers": kafka.bootstrap}, stack.partials, stack.state, stack.history)
    evaluator = Evaluator(rules, config, {"file": FileChannel(stack.sent_path)}, stack.clock, lag.measure)
    for shard in range(4):
        logstore.put(shard, [({"speed": 50, "carID": shard, "zone": "z"}, int(sls_clock.now))])
    logstore.deliver()
    sls_clock.advance(400)
    logstore.put(2, [({"speed": 50, "carID": 2, "zone": "z"}, int(sls_clock.now))])  # not delivered yet
    stack.clock.now = 1_800_000_000
    evaluator.tick()
    logstore.deliver()
    stack.clock.now += 60
    evaluator.tick()
    evaluator.close()
    lag.close()

    assert [(n["transition"], n["labels"], n["value"]) for n in stack.sent()] == [
        ("firing", {"shard": "2"}, 400.0), ("resolved", {"shard": "2"}, 0.0)]
    assert {n["groups"] == [] for n in stack.sent()} == {True}
    assert [n["description"] for n in stack.sent()] == ["lagging", "lagging"]
