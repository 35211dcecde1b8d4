"""The outbox against the real broker: claim before send, retries with backoff, restarts and a racing evaluator
never send a notification twice (the channel is a recording stand-in: SMTP is the channels' own tests)."""

import pytest

from alerting.evaluator import Evaluator, EvaluatorConfig
from alerting.notification import SendResult
from alerting.outbox import CLAIMED, PENDING, SENT
from alerting.rules import parse_rules
from alerting.store import AlertStore
from common.errors import ConfigError, FatalSinkError
from processor.cli import main
from tests.alerting.support import Clock
from tests.kafka_helpers import read_all

RULES = parse_rules("rules:\n- {name: quiet, type: absence, after: 1m}\n")
T0 = 1_800_000_000


class Recording:
    name = "recording"

    def __init__(self, up=True):
        self.up, self.sent = up, []

    def send(self, notification):
        if not self.up:
            return SendResult(delivered=False, retryable=True, reply="421 4.3.0 service not available")
        self.sent.append(notification.id)
        return SendResult(delivered=True, retryable=False, reply="250 2.0.0 queued")


class Crash(BaseException):
    """The process dies inside the channel: after the claim was committed, before anything was recorded."""


class Crashing:
    name = "crashing"

    def send(self, notification):
        raise Crash


@pytest.fixture
def config(kafka, topic_factory):
    return EvaluatorConfig({"bootstrap.servers": kafka.bootstrap}, topic_factory(),
                           topic_factory(config={"cleanup.policy": "compact"}), topic_factory(), 60.0)


def firing_logstore_silence(config, channel, clock):
    """An evaluator whose only rule fires (an empty logstore) once a minute has passed."""
    evaluator = Evaluator(RULES, config, {"c": channel}, clock)
    evaluator.tick()
    clock.now += 120
    return evaluator


def test_a_restarted_evaluator_keeps_the_firing_alert_and_does_not_send_it_again(config):
    clock, channel = Clock(T0), Recording()
    first = firing_logstore_silence(config, channel, clock)
    assert first.tick().sent == 1
    first.close()
    second = Evaluator(RULES, config, {"c": channel}, clock)
    assert second.states["quiet"].groups[""].status == "firing"
    clock.now += 60
    second.tick()
    second.close()
    assert len(channel.sent) == 1


def test_sent_entries_are_deleted_a_day_after_the_late_horizon(config):
    clock, channel = Clock(T0), Recording()
    rules = parse_rules("rules:\n- {name: quiet, type: absence, after: 1m, repeat: 30d}\n")
    evaluator = Evaluator(rules, config, {"c": channel}, clock)
    evaluator.tick()
    clock.now += 120
    evaluator.tick()
    clock.now += 3600 + 86_400 - 200
    evaluator.tick()
    assert len(evaluator.outbox) == 1
    clock.now += 400
    evaluator.tick()
    evaluator.close()
    assert evaluator.outbox == {}
    assert Evaluator(rules, config, {"c": channel}, clock).outbox == {}  # the tombstone is what a restart reads
    assert len(channel.sent) == 1


def pending_lines(kafka, config, monkeypatch, capsys):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap)
    monkeypatch.setenv("ALERT_STATE_TOPIC", config.state_topic)
    capsys.readouterr()
    assert main(["alerts", "pending"]) == 0
    return capsys.readouterr().out.splitlines()


def test_a_channel_that_is_down_is_retried_with_backoff_until_it_takes_the_alert(kafka, config, monkeypatch,
                                                                                 capsys):
    clock, channel = Clock(T0), Recording(up=False)
    evaluator = firing_logstore_silence(config, channel, clock)
    assert (evaluator.tick().failed, channel.sent) == (1, [])
    [waiting, total] = pending_lines(kafka, config, monkeypatch, capsys)
    assert waiting.startswith("quiet firing ")
    assert waiting.endswith("to c: pending, 1 attempt(s), next 2027-01-15T08:02:05Z; last reply: 421 4.3.0 service "
                            "not available")
    assert total == "1 notification(s) waiting"
    [entry] = evaluator.outbox.values()
    assert (entry["status"], entry["next_at"], entry["reply"]) == (PENDING, clock.now + 5, "421 4.3.0 service not "
                                                                   "available")
    assert evaluator.tick().failed == 0  # within the backoff: not tried again
    channel.up = True
    clock.now += 5
    assert evaluator.tick().sent == 1
    clock.now += 600
    evaluator.tick()
    evaluator.close()
    assert len(channel.sent) == 1
    attempts = [r.value for r in read_all(kafka.bootstrap, config.history_topic) if b'"event":"attempt"' in r.value]
    assert pending_lines(kafka, config, monkeypatch, capsys)[-1] == "0 notification(s) waiting"
    assert [b'"delivered":true' in a for a in attempts] == [False, True]
    assert b"250 2.0.0 queued" in attempts[1]


def test_a_crash_between_claim_and_send_is_sent_once_after_the_claim_lease(config):
    clock = Clock(T0)
    crashed = firing_logstore_silence(config, Crashing(), clock)
    with pytest.raises(Crash):
        crashed.tick()
    channel = Recording()
    successor = Evaluator(RULES, config, {"c": channel}, clock)
    [entry] = successor.outbox.values()
    assert entry["status"] == CLAIMED
    successor.tick()
    assert channel.sent == []  # the claim may belong to an evaluator still sending: wait for its lease
    clock.now += 60
    successor.tick()
    clock.now += 60
    successor.tick()
    successor.close()
    assert len(channel.sent) == 1
    assert [e["status"] for e in successor.outbox.values()] == [SENT]


def test_a_second_evaluator_fences_the_first(config):
    clock, channel = Clock(T0), Recording()
    first = firing_logstore_silence(config, channel, clock)
    second = Evaluator(RULES, config, {"c": channel}, clock)
    with pytest.raises(FatalSinkError, match="another alert evaluator took over"):
        first.tick()
    second.tick()
    second.close()
    assert len(channel.sent) == 1


def test_the_state_topic_must_exist(kafka, topic_factory):
    store = AlertStore({"bootstrap.servers": kafka.bootstrap}, "no-such-alert-state", "h")
    with pytest.raises(ConfigError, match="topic 'no-such-alert-state' does not exist"):
        store.load()


def test_each_rule_goes_to_its_channels_once_each(config):
    rules = parse_rules("""channels:
  a: {type: webhook, url: "http://127.0.0.1:9/a"}
  b: {type: webhook, url: "http://127.0.0.1:9/b"}
rules:
  - {name: to-a, type: absence, after: 1m, channels: [a]}
  - {name: to-all, type: absence, after: 1m}
""")
    clock, a, b = Clock(T0), Recording(), Recording()
    evaluator = Evaluator(rules, config, {"a": a, "b": b}, clock)
    evaluator.tick()
    clock.now += 120
    evaluator.tick()
    evaluator.close()
    restarted = Evaluator(rules, config, {"a": a, "b": b}, clock)
    clock.now += 60
    restarted.tick()
    restarted.close()
    assert (len(a.sent), len(b.sent)) == (2, 1)
    assert set(b.sent) < set(a.sent)  # the same notification, under the same id, in both channels
