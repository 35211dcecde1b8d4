"""s.yaml's second function, the alert evaluator, against the code it runs."""

import importlib
import re
from pathlib import Path

import yaml

from alerting.channel_config import evaluator_channels
from alerting.evaluator import EvaluatorConfig
from alerting.failures import trigger_log
from alerting.lag import lag_source
from alerting.rules import load_rules

ROOT = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((ROOT / "s.yaml").read_text())
PROPS = DOC["resources"]["sls-kafka-alerts"]["props"]
ENV = PROPS["environmentVariables"]


def test_handler_and_initializer_exist():
    for setting in (PROPS["handler"], PROPS["instanceLifecycleConfig"]["initializer"]["handler"]):
        module, function = setting.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), function)), setting


def test_the_rules_it_names_ship_and_the_timer_ticks_once_per_hop():
    rules = load_rules(ROOT / ENV["ALERT_RULES"])
    [timer] = PROPS["triggers"]
    every = re.fullmatch(r"@every (\d+)m", timer["triggerConfig"]["cronExpression"])
    assert int(every[1]) * 60 <= min(r.hop_seconds for r in rules.rules)


def test_every_variable_the_rules_channels_reference_is_set():
    rules = load_rules(ROOT / ENV["ALERT_RULES"])
    environ = {k: "ops@example.com" if v.startswith("${") else v for k, v in ENV.items()}
    assert sorted(evaluator_channels(rules, ENV["ALERT_CHANNEL"] or None, environ)) == ["ops-mail"]


def test_the_lag_rule_reads_the_functions_checkpoints():
    processor = DOC["resources"]["sls-kafka-processor"]["props"]["environmentVariables"]
    assert (ENV["CHECKPOINT_STORE"], ENV["SLS_CONSUMER_GROUP"]) == (processor["CHECKPOINT_STORE"],
                                                                  processor["SLS_CONSUMER_GROUP"])
    rules = load_rules(ROOT / ENV["ALERT_RULES"])
    # Deploy-time placeholders: a plaintext Kafka, credentials from the role.
    environ = {**{k: "x" if v.startswith("${") else v for k, v in ENV.items() if not k.startswith("KAFKA_S")},
               "ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"}
    source = lag_source(rules, environ)
    assert source is not None
    assert source.runtime.settings.checkpoint.store == "sls"
    source.close()


def test_the_failed_invocations_rule_reads_the_log_the_processors_trigger_writes():
    [trigger] = DOC["resources"]["sls-kafka-processor"]["props"]["triggers"]
    log_config = trigger["triggerConfig"]["logConfig"]
    assert (ENV["SLS_PROJECT"], ENV["SLS_TRIGGER_LOGSTORE"]) == (log_config["project"], log_config["logstore"])
    rules = load_rules(ROOT / ENV["ALERT_RULES"])
    environ = {**{k: "x" if v.startswith("${") else v for k, v in ENV.items() if not k.startswith("KAFKA_S")},
               "ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"}
    source = trigger_log(rules, environ)
    assert source is not None
    assert (source.project, source.logstore) == ("x", "x")
    source.close()


def test_its_configuration_reads_and_the_claim_lease_outlasts_an_invocation():
    config = EvaluatorConfig.from_env({k: "x" if v.startswith("${") else v for k, v in ENV.items()})
    assert config.claim_lease_seconds > PROPS["timeout"]
    assert ENV["ALERT_PARTIALS_TOPIC"] == DOC["resources"]["sls-kafka-processor"]["props"]["environmentVariables"][
        "ALERT_PARTIALS_TOPIC"]
