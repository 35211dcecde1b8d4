"""`extend:` and timer triggers in s.yaml, as the demo's s.demo.yaml uses them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from devstack.fc.instances import Outcome
from devstack.fc.spec import DeployError, load
from devstack.fc.timer import TimerTrigger
from tests.devstack.fc.fc_support import repo_env, write_s_yaml

REPO = Path(__file__).resolve().parents[3]
ENV = {**repo_env("127.0.0.1:1", "t", "p", "l", "tl"), "SMTP_PORT": "2525", "SMTP_CA_FILE": "/ca.pem",
       "DEMO_CODE_ZIP": "/code.zip"}


def test_s_demo_yaml_is_s_yaml_with_the_demos_cadences_rules_and_code():
    base = {f.name: f for f in load(REPO / "s.yaml", ENV, "1")}
    demo = {f.name: f for f in load(REPO / "s.demo.yaml", ENV, "1")}
    assert list(demo) == list(base)
    processor, evaluator = demo["sls-kafka-processor"], demo["sls-kafka-processor-alerts"]
    [trigger] = processor.triggers
    assert (trigger.interval, trigger.max_retry, trigger.logstore) == (3.0, 3, "l")
    assert [(t.name, t.every) for t in evaluator.timers] == [("alerts-timer", 2.0)]
    assert [(t.name, t.every) for t in base["sls-kafka-processor-alerts"].timers] == [("alerts-timer", 60.0)]
    for name, spec in demo.items():
        assert spec.code == Path("/code.zip")
        assert spec.env["ALERT_RULES"] == "alerting/rules/demo.yaml"
        # Everything the demo does not override is s.yaml's, key by key.
        unchanged = {k: v for k, v in spec.env.items() if k in base[name].env and k != "ALERT_RULES"}
        assert unchanged == {k: v for k, v in base[name].env.items() if k != "ALERT_RULES"}
        assert (spec.timeout, spec.handler, spec.initializer) == (base[name].timeout, base[name].handler,
                                                                 base[name].initializer)
    assert {k: evaluator.env[k] for k in ("SMTP_PORT", "SMTP_CA_FILE")} == {"SMTP_PORT": "2525",
                                                                           "SMTP_CA_FILE": "/ca.pem"}


def test_an_extend_cycle_and_a_cron_expression_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extend: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extend: a.yaml\n")
    with pytest.raises(DeployError, match=r"extends itself"):
        load(tmp_path / "a.yaml", {}, "1")
    props = {"region": "r", "functionName": "f", "runtime": "python3.10", "code": ".", "handler": "index.handler",
             "triggers": [{"triggerName": "t", "triggerType": "timer",
                           "triggerConfig": {"cronExpression": "0 0/5 * * * *"}}]}
    with pytest.raises(DeployError, match=r"triggers\[0\]\.triggerConfig\.cronExpression '0 0/5 \* \* \* \*': "
                                          r"the local cloud runs only '@every <N>s\|m\|h'"):
        load(write_s_yaml(tmp_path / "s.yaml", {"f": props}), {}, "1")


def test_a_timer_invokes_at_its_cadence_with_fcs_timer_event(tmp_path):
    props = {"region": "r", "functionName": "f", "runtime": "python3.10", "code": ".", "handler": "index.handler",
             "triggers": [{"triggerName": "tick", "triggerType": "timer",
                           "triggerConfig": {"cronExpression": "@every 1s", "payload": "hello"}}]}
    [timer] = load(write_s_yaml(tmp_path / "s.yaml", {"f": props}), {}, "1")[0].timers
    calls: list[tuple[float, dict]] = []
    lines: list[str] = []
    three = threading.Event()

    def invoke(event: bytes) -> Outcome:
        calls.append((time.monotonic(), json.loads(event)))
        if len(calls) == 3:
            three.set()
        return Outcome(f"req-{len(calls)}", b"{}")

    started = time.monotonic()
    trigger = TimerTrigger(timer, invoke, lines.append).start()
    try:
        assert three.wait(10)
    finally:
        trigger.stop()
    assert [round(at - started) for at, _ in calls[:3]] == [1, 2, 3]
    assert {(e["triggerName"], e["payload"]) for _, e in calls} == {("tick", "hello")}
    assert " req-1 [TIMER] tick: success" in lines[0]
