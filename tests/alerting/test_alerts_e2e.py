"""Alerts end to end: the FC function with a rules file over a 4-shard logstore in the emulator, its partials in
the real broker, the evaluator on a test clock sending into a file channel."""

import pytest

from processor import handler as fc
from tests.alerting.support import alert_stack, make_logstore, window_start
from tests.kafka_helpers import read_all
from tests.pipeline_support import fc312_context

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


BURST = """\
evaluator: {grace: 1m, late_horizon: 1h}
rules:
  - name: speeding-burst
    type: window
    aggregate: count
    filter: speed > 120
    window: 5m
    hop: 1m
    threshold: "> 50"
"""


def independent_count(written, start, end):
    return sum(1 for record, t in written if record["speed"] > 120 and start <= t < end)


def test_a_windowed_count_fires_once_with_the_true_value_and_resolves_after_the_burst(kafka, topic_factory, tmp_path,
                                                                                     function_env, logstore):
    stack = alert_stack(BURST, kafka, topic_factory, tmp_path, function_env)
    t0 = window_start(300)
    written = []
    for i in range(400):  # 20 minutes of traffic; minutes 5-8 hold the burst of speeding
        t = t0 + i * 3
        burst = 300 <= t - t0 < 480
        record = {"speed": 121 + i % 40 if burst else 60 + i % 50, "carID": 1000 + i % 37, "zone": "z"}
        written.append((record, t))
    for shard in range(4):
        logstore.put(shard, written[shard::4])
    logstore.deliver()
    stack.clock.now = t0 - 1
    evaluator = stack.evaluator()
    evaluator.tick()
    for end in range(t0 + 60, t0 + 1260, 60):
        stack.clock.now = end + 60
        evaluator.tick()
    evaluator.close()

    sent = stack.sent()
    assert [n["transition"] for n in sent] == ["firing", "resolved"]
    firing, resolved = sent
    assert firing["value"] == independent_count(written, firing["window_start"], firing["window_end"])
    assert firing["value"] > 50
    # The first window over the threshold fired: the window one hop earlier was not over it.
    assert independent_count(written, firing["window_start"] - 60, firing["window_end"] - 60) <= 50
    assert resolved["value"] == independent_count(written, resolved["window_start"], resolved["window_end"]) <= 50
    assert resolved["window_start"] > firing["window_start"]


TUMBLING_BURST = BURST.replace("    hop: 1m\n", "")


def test_a_retried_range_does_not_count_twice(kafka, topic_factory, tmp_path, function_env, logstore):
    stack = alert_stack(TUMBLING_BURST, kafka, topic_factory, tmp_path, function_env)
    t0 = window_start(300)
    written = [({"speed": 130, "carID": i, "zone": "z"}, t0 + i % 300) for i in range(120)]
    for shard in range(4):
        logstore.put(shard, written[shard::4])
    events = logstore.new_events()
    for ev in events:
        fc.handler(ev, fc312_context())
    # The retry runs on another instance with no checkpoint of the first: it delivers the whole range again.
    function_env.set({"CHECKPOINT_DIR": str(tmp_path / "other-instance")})
    for ev in events:
        assert fc.handler(ev, fc312_context())["produced"] > 0
    partials = read_all(kafka.bootstrap, stack.partials)
    assert len(partials) > len({p.key for p in partials})  # the retry did emit its partials again
    stack.clock.now = t0 - 1
    evaluator = stack.evaluator()
    evaluator.tick()
    stack.clock.now = t0 + 300 + 60
    evaluator.tick()
    evaluator.close()

    [firing] = stack.sent()
    assert (firing["window_start"], firing["window_end"], firing["value"]) == (t0, t0 + 300, 120)


def test_late_records_inside_the_grace_count_and_outside_it_send_a_correction(kafka, topic_factory, tmp_path,
                                                                             function_env, logstore):
    stack = alert_stack(TUMBLING_BURST, kafka, topic_factory, tmp_path, function_env)
    t0 = window_start(300)
    logstore.put(0, [({"speed": 130, "carID": i, "zone": "z"}, t0 + i) for i in range(30)])
    logstore.deliver()
    stack.clock.now = t0 - 1
    evaluator = stack.evaluator()
    evaluator.tick()
    stack.clock.now = t0 + 300 + 30  # the window ended, its grace has not
    evaluator.tick()
    logstore.put(1, [({"speed": 130, "carID": i, "zone": "z"}, t0 + 200 + i) for i in range(15)])
    logstore.deliver()
    stack.clock.now = t0 + 300 + 60  # closes now, with the 15 records that came within the grace
    evaluator.tick()
    assert stack.sent() == []
    assert evaluator.states["speeding-burst"].decided[t0 + 300][""][:2] == [45, 45]
    logstore.put(2, [({"speed": 130, "carID": i, "zone": "z"}, t0 + 250 + i) for i in range(10)])
    logstore.deliver()
    stack.clock.now = t0 + 300 + 120  # after the grace: these 10 are late, and take the window over 50
    evaluator.tick()
    evaluator.close()

    [correction] = stack.sent()
    assert (correction["transition"], correction["value"], correction["window_start"]) == ("correction", 55, t0)
    assert evaluator.states["speeding-burst"].late_records == 10
    late = [r.value for r in read_all(kafka.bootstrap, stack.history) if b'"event":"late"' in r.value]
    assert len(late) == 1
    assert b'"records":10' in late[0]


ABSENCE = """\
evaluator: {grace: 1m}
rules:
  - name: car-silent
    type: absence
    key: carID
    after: 5m
"""


def test_absence_of_one_car_fires_and_resolves_when_it_comes_back(kafka, topic_factory, tmp_path, function_env,
                                                                  logstore):
    stack = alert_stack(ABSENCE, kafka, topic_factory, tmp_path, function_env)
    t0 = window_start(300)
    stack.clock.now = t0
    evaluator = stack.evaluator()
    evaluator.tick()

    def drive(car, start, end):
        logstore.put(car % 4, [({"speed": 50, "carID": car, "zone": "z"}, t) for t in range(start, end, 20)])

    drive(1, t0, t0 + 60)
    drive(2, t0, t0 + 600)
    logstore.deliver()
    for now in range(t0 + 60, t0 + 720, 60):
        stack.clock.now = now
        evaluator.tick()
    assert [(n["transition"], [g["group"] for g in n["groups"]]) for n in stack.sent()] == [("firing", ["1"])]
    drive(1, t0 + 700, t0 + 720)
    logstore.deliver()
    stack.clock.now = t0 + 780
    evaluator.tick()
    evaluator.close()

    sent = stack.sent()
    assert [(n["transition"], [g["group"] for g in n["groups"]]) for n in sent] == [("firing", ["1"]),
                                                                                    ("resolved", ["1"])]
    # Car 1's last record before the silence was at t0 + 40; the alert fired once the watermark was 5 min past it.
    assert sent[0]["window_start"] == t0 + 40
