"""The evaluator as the timer-triggered FC function (`alerts_index.handler`): one evaluation per invocation, and
a warm instance that another fenced rebuilds itself at its next invocation."""

import pytest

import alerts_index
from alerting import function
from common.errors import ConfigError, FatalSinkError


@pytest.fixture
def evaluator_env(kafka, topic_factory, tmp_path, monkeypatch):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n- {name: quiet, type: absence, after: 1m}\n")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "ALERT_RULES": str(rules),
           "ALERT_CHANNEL": f"file:{tmp_path / 'sent.jsonl'}", "ALERT_PARTIALS_TOPIC": topic_factory(),
           "ALERT_STATE_TOPIC": topic_factory(config={"cleanup.policy": "compact"}),
           "ALERT_HISTORY_TOPIC": topic_factory()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(function, "_evaluator", None)
    yield env
    if function._evaluator is not None:
        function._evaluator.close()


def test_each_invocation_evaluates_once_and_a_fenced_instance_rebuilds(evaluator_env):
    first = alerts_index.initialize(None)
    assert alerts_index.handler(b"", None) == {"partials": 0, "notifications": 0, "sent": 0, "failed": 0}
    newer = function.Evaluator(first.rules, first.config, first.channels)  # another instance starts: fences us
    with pytest.raises(FatalSinkError, match="another alert evaluator took over"):
        alerts_index.handler(b"", None)
    assert function._evaluator is None
    newer.close()
    assert alerts_index.handler(b"", None)["failed"] == 0  # rebuilt from the committed state, fencing back
    assert function._evaluator is not first


def test_a_missing_rules_file_setting_is_named(monkeypatch):
    monkeypatch.delenv("ALERT_RULES", raising=False)
    with pytest.raises(ConfigError, match="ALERT_RULES is not set"):
        function.initialize(None)
