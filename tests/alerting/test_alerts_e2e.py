"""Alerts end to end: the FC function with a rules file over a 4-shard logstore in the emulator, its partials in
the real broker, the evaluator on a test clock sending into a file channel."""

import pytest

from tests.alerting.support import alert_stack, make_logstore, window_start
from tests.kafka_helpers import read_all

SPEEDING = """\
evaluator: {grace: 1m, late_horizon: 1h}
rules:
  - name: speeding
    type: record
    when: speed > 120
    key: carID
    value: speed
    repeat: 30m
    severity: critical
"""


@pytest.fixture
def logstore(sls_client, sls_proxy_env, sls_project):
    return make_logstore(sls_client, sls_proxy_env, sls_project)


def test_a_speeding_burst_over_four_shards_gives_one_digest_with_the_right_cars(kafka, topic_factory, tmp_path,
                                                                              function_env, logstore):
    stack = alert_stack(SPEEDING, kafka, topic_factory, tmp_path, function_env)
    t0 = window_start(60)
    speeding = {7: 131, 13: 150, 21: 122, 33: 178}
    for shard in range(4):
        normal = [({"speed": 60 + car, "carID": car, "zone": "north"}, t0 + car) for car in range(40)]
        fast = [({"speed": speed - shard, "carID": car, "zone": "north"}, t0 + 30 + shard)
                for car, speed in speeding.items() if car % 4 == shard or car == 13]
        logstore.put(shard, normal + fast)
    assert len(logstore.deliver()) == 4
    stack.clock.now = t0 - 1
    evaluator = stack.evaluator()
    assert evaluator.tick().notifications == 0
    stack.clock.now = t0 + 60 + 60  # the pane's end plus the grace
    report = evaluator.tick()
    stack.clock.now += 600
    evaluator.tick()
    evaluator.close()

    [digest] = stack.sent()
    assert (report.notifications, report.sent) == (1, 1)
    assert digest["rule"] == "speeding"
    assert digest["transition"] == "firing"
    # Car 13 was fast on every shard: its highest speed (shard 0's) is reported, once.
    assert {g["group"]: g["value"] for g in digest["groups"]} == {"7": 131 - 3, "13": 150, "21": 122 - 1,
                                                                  "33": 178 - 1}
    assert digest["samples"]
    assert all(s["project"] == logstore.project for s in digest["samples"])
    history = [r.value for r in read_all(kafka.bootstrap, stack.history)]
    assert sum(b'"event":"attempt"' in h for h in history) == 1
