"""The README's main job: `sls-kafka demo` deploys s.yaml to the local cloud on its own stack and checks it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from devstack.demo_cloud import alerted_keys
from devstack.kafka import free_port
from devstack.smtp import read_mail

pytestmark = pytest.mark.slow  # the demo starts the whole dev stack and the local cloud in subprocesses

REPO = Path(__file__).resolve().parents[2]
TRIGGER_LOG = re.compile(r"== trigger log demo-\w+/trigger-log: (\d+) invocation\(s\) over (\d) shard\(s\), 0 failed")
ALERT_CHECK = re.compile(r"== alert check: (\d+) speeding mail\(s\) from this run list (\d+) of the (\d+) speeding "
                         r"cars within 60s: OK")


def demo(state: Path, *extra: str, kafka_port: int | None = None) -> list[str]:
    return [sys.executable, "-m", "processor", "demo", "--kafka-port", str(kafka_port or free_port()),
            "--sls-port", str(free_port()), "--smtp-port", str(free_port()), "--smtp-tls-port", str(free_port()),
            "--fc-port", str(free_port()), "--state-dir", str(state), *extra]


def speeding_mails(state: Path) -> list:
    return [m for m in read_mail(state / "smtp" / "mail") if "Rule:      speeding (critical), firing" in m.text()]


def test_demo_delivers_through_the_trigger_mails_the_speeding_cars_and_stops_what_it_started(tmp_path):
    state = tmp_path / "stack"
    proc = subprocess.run([*demo(state, "--records", "300", "--intervals", "2")], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "sls-trigger every 3s on demo-" in out
    assert "alerts-timer every 2s" in out
    lesson = """the lesson's two lines arrived as: ['{"speed":12,"carID":1234}', '{"speed":24,"carID":3512}']"""
    assert lesson in out
    assert "602 good records written, 602 delivered, 0 missing, 0 duplicated; 8 poison written, 8 dead-lettered: OK" \
        in out
    # The trigger, not the demo, invoked the function: its log and the function's log agree on how often.
    invocations, shards = map(int, TRIGGER_LOG.search(out).groups())
    function_log = (state / "fc" / "logs" / "sls-kafka-processor.log").read_text()
    assert len(re.findall(r"\[TRIGGER\] sls-trigger shard \d .* attempt 0: success", function_log)) == invocations
    assert 1 <= shards <= 4
    assert invocations >= shards
    assert "[TIMER] alerts-timer: success" in (state / "fc" / "logs" / "sls-kafka-processor-alerts.log").read_text()
    # The mail the SMTP server stored is the one shown, and the digests list every speeding car the demo counted.
    mails, listed, speeding = map(int, ALERT_CHECK.search(out).groups())
    stored = speeding_mails(state)
    assert len(stored) >= mails >= 1
    assert listed == speeding >= 1  # every batch has a speeding car (devstack/sample_data.py)
    assert len(alerted_keys(stored)) == speeding
    assert f"Message-ID: {stored[0].message['Message-ID']}" in out
    assert f"Subject: {stored[0].message['Subject']}" in out
    assert "[FIRING] speeding (critical)" in out
    assert "stopped the local cloud's deployment" in out
    assert "stopped the local stack" in out
    assert not (state / "state.json").exists()
    assert not (state / "fc" / "host.json").exists()


def test_demo_again_on_a_running_stack_reuses_its_topics_and_checks_only_its_own_records(tmp_path):
    state = tmp_path / "stack"
    kafka_port = free_port()
    args = demo(state, "--records", "100", "--intervals", "1", "--keep-stack", kafka_port=kafka_port)
    try:
        runs, mails = [], []
        for _ in range(2):
            runs.append(subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, check=False))
            mails.append(len(speeding_mails(state)))
        for proc in runs:
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "== Kafka topic vehicles-demo: 102 records from this run (read_committed)" in proc.stdout
            assert "102 good records written, 102 delivered, 0 missing, 0 duplicated; 4 poison written, " \
                "4 dead-lettered: OK" in proc.stdout
            assert ALERT_CHECK.search(proc.stdout)
        assert f"kafka: 127.0.0.1:{kafka_port} (already running)" in runs[1].stdout
        assert "stopped the previous deployment" in runs[1].stdout
        assert mails[1] > mails[0] >= 1  # the second run's cars were mailed again
        topics = AdminClient({"bootstrap.servers": f"127.0.0.1:{kafka_port}"}).list_topics(timeout=10).topics
        assert sorted(t for t in topics if t.startswith("vehicles")) == ["vehicles-demo", "vehicles-demo.dlq"]
        assert sorted(t for t in topics if t.startswith("sls-kafka-alert")) == [
            "sls-kafka-alert-history", "sls-kafka-alert-partials", "sls-kafka-alert-state"]
    finally:
        subprocess.run([sys.executable, "-m", "processor", "dev", "down", "--state-dir", str(state)], cwd=REPO,
                       capture_output=True, timeout=120, check=False)
