"""Configuration librdkafka or the time budget would reject later: refused at start-up, naming the variable."""

import logging
import math

import pytest

from common.errors import ConfigError
from processor.config import Settings
from processor.runtime import Runtime

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "KAFKA_TOPIC": "vehicles"}


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"KAFKA_PRODUCER_CONFIG": '{"compression.type": "bogus"}'},
         ("KAFKA_PRODUCER_CONFIG", "compression.type", "'bogus'")),
        ({"KAFKA_PRODUCER_CONFIG": '{"linger.ms": "abc"}'}, ("KAFKA_PRODUCER_CONFIG", "linger.ms", "'abc'")),
        ({"KAFKA_PRODUCER_CONFIG": '{"retries": 0}'}, ("KAFKA_PRODUCER_CONFIG", "retries=0", "enable.idempotence")),
        ({"KAFKA_PRODUCER_CONFIG": '{"linger.ms": 5, "no.such.setting": 1}'},
         ("KAFKA_PRODUCER_CONFIG", "no.such.setting")),
        ({"KAFKA_PRODUCER_CONFIG": '{"batch.size": [1]}'}, ("KAFKA_PRODUCER_CONFIG", "batch.size", "[1]")),
        ({"KAFKA_SECURITY_PROTOCOL": "bogus"}, ("KAFKA_SECURITY_PROTOCOL", "'bogus'")),
        # Refused only together: every setting involved is named.
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "ROT13"},
         ("KAFKA_SASL_MECHANISM='ROT13'", "KAFKA_SECURITY_PROTOCOL='SASL_PLAINTEXT'", "Unsupported SASL mechanism")),
        # The transactional producer of exactly-once mode is checked as it will be built.
        ({"DELIVERY_MODE": "exactly-once", "KAFKA_PRODUCER_CONFIG": '{"max.in.flight": 10}'},
         ("KAFKA_PRODUCER_CONFIG", "max.in.flight=10")),
    ],
)
def test_producer_settings_librdkafka_rejects_are_config_errors_naming_variable_and_value(env, needles):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, **env})
    for needle in needles:
        assert needle in str(info.value)


def test_rejected_sasl_settings_never_echo_the_password():
    env = {**BASE, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "NOPE",
           "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "hunter2-secret"}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert "KAFKA_SASL_MECHANISM='NOPE'" in str(info.value)
    assert "KAFKA_SASL_PASSWORD=***" in str(info.value)
    assert "hunter2-secret" not in str(info.value)


def test_valid_producer_settings_pass():
    env = {**BASE, "KAFKA_PRODUCER_CONFIG": '{"compression.type": "zstd", "linger.ms": 5, "retries": 3}',
           "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u",
           "KAFKA_SASL_PASSWORD": "p"}
    assert Settings.from_env(env).kafka.producer_config()["compression.type"] == "zstd"


@pytest.mark.parametrize("key", ["metadata.broker.list", "request.required.acks", "default.topic.config"])
def test_aliases_of_managed_producer_settings_are_refused(key):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, "KAFKA_PRODUCER_CONFIG": f'{{"{key}": "x"}}'})
    assert f"must not set {key!r}" in str(info.value)


def test_margin_over_a_fifth_of_the_timeout_is_capped_with_a_warning(caplog):
    runtime = Runtime(Settings.from_env({**BASE, "TIME_BUDGET_MARGIN_SECONDS": "3600"}))
    with caplog.at_level(logging.WARNING):
        deadline = runtime.deadline(600)
        runtime.deadline(600)
    assert math.isclose(deadline.remaining(), 480, abs_tol=1)
    warnings = [r.getMessage() for r in caplog.records if "TIME_BUDGET_MARGIN_SECONDS" in r.getMessage()]
    assert len(warnings) == 1  # once per timeout, not per invocation
    assert "TIME_BUDGET_MARGIN_SECONDS=3600" in warnings[0]
    assert "120" in warnings[0]


def test_margin_within_a_fifth_of_the_timeout_is_used_silently(caplog):
    runtime = Runtime(Settings.from_env({**BASE, "TIME_BUDGET_MARGIN_SECONDS": "100"}))
    with caplog.at_level(logging.WARNING):
        deadline = runtime.deadline(600)
    assert math.isclose(deadline.remaining(), 500, abs_tol=1)
    assert not [r for r in caplog.records if "TIME_BUDGET_MARGIN_SECONDS" in r.getMessage()]
