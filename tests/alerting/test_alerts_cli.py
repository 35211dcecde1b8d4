"""`sls-kafka alerts` check, test (backtest over the emulator), run --once and history, in-process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from processor.cli import main
from tests.alerting.support import FIELDS, alert_stack, make_logstore, window_start
from tests.alerting.test_alerts_e2e import BURST, SPEEDING
from tests.kafka_helpers import read_all
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET

REPO = Path(__file__).resolve().parents[2]


def test_check_prints_the_rules_and_refuses_a_mistake_naming_it(tmp_path, capsys):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(SPEEDING)
    bad.write_text(SPEEDING.replace("key: carID", "key: carID\n    colour: red"))
    assert main(["alerts", "check", str(good), "--fields", FIELDS]) == 0
    assert "speeding [record, critical]: when speed > 120 per carID" in capsys.readouterr().out
    assert main(["alerts", "check", str(bad)]) == 2
    assert f"{bad}:7: rule 'speeding' (type record): unknown key 'colour'" in capsys.readouterr().err


def test_backtest_prints_what_would_fire_and_sends_nothing(sls_client, sls_proxy_env, sls_project, tmp_path,
                                                           monkeypatch, capsys):
    logstore = make_logstore(sls_client, sls_proxy_env, sls_project)
    t0 = window_start(300)
    for shard in range(4):
        logstore.put(shard, [({"speed": 125 + shard, "carID": 100 + shard * 20 + i % 20, "zone": "z"}, t0 + i)
                             for i in range(20)])
    rules = tmp_path / "rules.yaml"
    rules.write_text(SPEEDING + BURST.split("rules:\n", 1)[1].replace("    hop: 1m\n", "").replace("> 50", "> 70"))
    for name, value in {"PROJECTION_FIELDS": FIELDS, "ALIBABA_CLOUD_ACCESS_KEY_ID": SLS_ACCESS_KEY_ID,
                        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SLS_ACCESS_KEY_SECRET}.items():
        monkeypatch.setenv(name, value)
    assert main(["alerts", "test", str(rules), "--endpoint", sls_proxy_env, "--project", sls_project,
                 "--logstore", "driving", "--from", "begin"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"read 4 page(s) of {sls_project}/driving; 3 notification(s) would have been sent")
    fired = [line.split(" ", 3)[1:3] for line in out[1:]]
    assert sorted(fired) == [["speeding", "firing"], ["speeding-burst", "firing"], ["speeding-burst", "resolved"]]
    digest = next(line for line in out if " speeding firing" in line)
    # One digest for the 80 cars of the four shards: the first ten shown, and how many more.
    assert " value 80 " in digest
    assert digest.count("=") == 10
    assert digest.endswith("(+70)")
    assert "value 80 > 70" in next(line for line in out if "speeding-burst firing" in line)


def test_run_once_sends_through_the_channel_and_history_shows_it(kafka, topic_factory, tmp_path, function_env,
                                                                 sls_client, sls_proxy_env, sls_project, monkeypatch,
                                                                 capsys):
    stack = alert_stack(SPEEDING.replace("grace: 1m", "grace: 0s").replace("repeat: 30m", "repeat: 30m\n    every: 1s"),
                        kafka, topic_factory, tmp_path, function_env)
    logstore = make_logstore(sls_client, sls_proxy_env, sls_project)
    for name, value in {"ALERT_STATE_TOPIC": stack.state, "ALERT_HISTORY_TOPIC": stack.history}.items():
        monkeypatch.setenv(name, value)
    args = ["alerts", "run", "--once", "--rules", str(stack.rules_path), "--channel", f"file:{stack.sent_path}"]
    assert main(args) == 0  # the first evaluation starts the windows now
    t = window_start(1, ago=0) + 2  # a record time just ahead of the wall clock, so its pane closes at the next run
    logstore.put(0, [({"speed": 140, "carID": 7, "zone": "z"}, t)])
    logstore.deliver()
    time.sleep(max(0.0, t + 1.2 - time.time()))
    assert main(args) == 0
    [sent] = stack.sent()
    assert [g["group"] for g in sent["groups"]] == ["7"]
    capsys.readouterr()
    assert main(["alerts", "history", "--rule", "speeding"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[2] for line in lines] == ["transition", "attempt"]
    assert f"default attempt 1: delivered (appended to {stack.sent_path})" in lines[1]
    assert main(["alerts", "history", "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out.splitlines()[0])["id"] == sent["id"]


def test_an_evaluator_sigkilled_while_sending_is_sent_once_by_the_next(kafka, topic_factory, tmp_path, function_env,
                                                                      sls_client, sls_proxy_env, sls_project,
                                                                      monkeypatch):
    stack = alert_stack(SPEEDING.replace("grace: 1m", "grace: 0s").replace("repeat: 30m", "repeat: 30m\n    every: 1s"),
                        kafka, topic_factory, tmp_path, function_env)
    logstore = make_logstore(sls_client, sls_proxy_env, sls_project)
    marker = tmp_path / "sending"
    env = {"ALERT_STATE_TOPIC": stack.state, "ALERT_HISTORY_TOPIC": stack.history, "STALL_MARKER": str(marker),
           "ALERT_CLAIM_LEASE_SECONDS": "2"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    once = ["alerts", "run", "--once", "--rules", str(stack.rules_path)]
    assert main([*once, "--channel", f"file:{stack.sent_path}"]) == 0
    t = window_start(1, ago=0) + 2
    logstore.put(0, [({"speed": 140, "carID": 7, "zone": "z"}, t)])
    logstore.deliver()
    time.sleep(max(0.0, t + 1.2 - time.time()))
    child = subprocess.Popen([sys.executable, "-m", "processor", *once, "--channel",
                              "tests.alerting.stalling_channel:factory"], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the evaluator never reached the channel"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    time.sleep(2)  # the claim's lease
    assert main([*once, "--channel", f"file:{stack.sent_path}"]) == 0
    assert main([*once, "--channel", f"file:{stack.sent_path}"]) == 0
    [sent] = stack.sent()
    assert sent["id"] == marker.read_text()  # the same notification, under the same id
    history = [orjson.loads(r.value) for r in read_all(kafka.bootstrap, stack.history)]
    assert [(h["event"], h.get("attempt")) for h in history] == [("transition", None), ("attempt", 2)]
