"""The evaluator as an FC function behind a timer trigger: each invocation is one evaluation (`Evaluator.tick`).

A warm instance keeps its evaluator (rule states and outbox in memory, its transactional producer). An
instance fenced by a newer one, or whose commit failed, fails that invocation and builds a new evaluator at the
next, which reloads the committed state (fencing the other in turn): at any time one evaluator can commit claims.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import Any

from alerting.channel_config import evaluator_channels
from alerting.evaluator import Evaluator, EvaluatorConfig
from alerting.failures import TriggerLog, trigger_log
from alerting.lag import LagSource, lag_source
from alerting.rules import load_rules
from common.errors import ConfigError, SinkError
from processor.credentials import resolve_credentials

log = logging.getLogger("alerting")

_evaluator: Evaluator | None = None
_lag: LagSource | None = None
_trigger_log: TriggerLog | None = None


def initialize(context: Any = None) -> Evaluator:
    """FC initializer: the rules, the channel and the Kafka settings are checked here, once per instance."""
    global _evaluator
    env = os.environ
    if not env.get("ALERT_RULES", "").strip():
        msg = "ALERT_RULES is not set: the evaluator needs the rules file (see README, Alerts)"
        raise ConfigError(msg)
    rules = load_rules(env["ALERT_RULES"].strip())
    channels = evaluator_channels(rules, env.get("ALERT_CHANNEL", "").strip() or None, env)
    global _lag, _trigger_log
    _lag = lag_source(rules, env, context)
    _trigger_log = trigger_log(rules, env, context)
    _evaluator = Evaluator(rules, EvaluatorConfig.from_env(env), channels,
                           measure_lag=_lag.measure if _lag else None,
                           read_failures=_trigger_log.failures if _trigger_log else None)
    return _evaluator


def handler(event: Any = None, context: Any = None) -> dict[str, Any]:
    """One evaluation; returns what it did. Raises (FC logs it, the next tick retries) when Kafka failed."""
    global _evaluator
    evaluator = _evaluator or initialize(context)
    if getattr(context, "credentials", None) is not None:
        for source in (_lag, _trigger_log):
            if source is not None:
                source.credentials = resolve_credentials(context, os.environ)
    try:
        return asdict(evaluator.tick())
    except SinkError:
        # Fenced, or a commit that failed: what is in memory may be ahead of Kafka; the next tick reloads.
        evaluator.close()
        _evaluator = None
        raise
