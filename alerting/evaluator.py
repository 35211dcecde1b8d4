"""The evaluator: partials merged across shards → rule engines → state and outbox committed → outbox sent.

One `tick` is what the timer-triggered function does per invocation and `sls-kafka alerts run` per interval:
  1. read the partials written within the look-back (the longest window, the grace and the late horizon);
  2. evaluate every rule against its state, loaded from the state topic when the evaluator started;
  3. commit, in one transaction, the new rule states, an outbox entry per new notification, and the history;
  4. send what is due: claim (committed), call the channel, record the result and its reply (committed).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerting.channel_config import targets
from alerting.engine import RuleEngine
from alerting.keyed import ReadFailures
from alerting.notification import Channel
from alerting.outbox import SENT, claimed, due, from_json, new_entry, send, settled
from alerting.partials import PartialIndex
from alerting.rules import RuleSet
from alerting.state import RuleState
from alerting.store import AlertStore, PartialsReader, Record
from common.errors import ConfigError

log = logging.getLogger(__name__)

RULE_KEY, OUTBOX_KEY = "rule/", "outbox/"
# Sent entries are kept this long past the late horizon (no transition they record can be decided again), then
# deleted (a tombstone, so compaction drops them).
SENT_RETENTION_SECONDS = 86_400
# Partials written this long before the oldest window still open or correctable are read too (clock skew).
LOOKBACK_MARGIN_SECONDS = 600


@dataclass(frozen=True)
class EvaluatorConfig:
    client_config: Mapping[str, Any] = field(repr=False)
    partials_topic: str = "sls-kafka-alert-partials"
    state_topic: str = "sls-kafka-alert-state"
    history_topic: str = "sls-kafka-alert-history"
    claim_lease_seconds: float = 120.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EvaluatorConfig:
        env = os.environ if env is None else env
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if not bootstrap:
            msg = "KAFKA_BOOTSTRAP_SERVERS is not set: the evaluator reads partials and keeps its state in Kafka"
            raise ConfigError(msg)
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap}
        for var, key in (("KAFKA_SECURITY_PROTOCOL", "security.protocol"), ("KAFKA_SASL_MECHANISM", "sasl.mechanism"),
                         ("KAFKA_SASL_USERNAME", "sasl.username"), ("KAFKA_SASL_PASSWORD", "sasl.password")):
            if env.get(var, "").strip():
                conf[key] = env[var].strip()
        lease = env.get("ALERT_CLAIM_LEASE_SECONDS", "120")
        try:
            lease_seconds = float(lease)
        except ValueError:
            msg = f"ALERT_CLAIM_LEASE_SECONDS={lease!r} is not a number of seconds"
            raise ConfigError(msg) from None
        return cls(conf, env.get("ALERT_PARTIALS_TOPIC") or cls.partials_topic,
                   env.get("ALERT_STATE_TOPIC") or cls.state_topic,
                   env.get("ALERT_HISTORY_TOPIC") or cls.history_topic, lease_seconds)


@dataclass
class TickReport:
    partials: int = 0
    notifications: int = 0
    sent: int = 0
    failed: int = 0


class Evaluator:
    def __init__(self, rules: RuleSet, config: EvaluatorConfig, channels: Mapping[str, Channel],
                 clock: Callable[[], float] = time.time,
                 measure_lag: Callable[[], Mapping[str, float]] | None = None,
                 read_failures: ReadFailures | None = None) -> None:
        self.rules, self.config, self.channels, self.clock = rules, config, dict(channels), clock
        for kind, given, watches in (("lag", measure_lag, "the lag"),
                                     ("failed_invocations", read_failures, "the trigger's log")):
            named = [r.name for r in rules.rules if r.kind == kind]
            if named and given is None:
                msg = f"{rules.source}: rule {named[0]!r} watches {watches}, but the evaluator has no SLS to read it"
                raise ConfigError(msg)
        self.measure_lag = measure_lag if any(r.kind == "lag" for r in rules.rules) else None
        self.read_failures = read_failures
        self.engines = [RuleEngine(r, rules.grace_seconds, rules.late_horizon_seconds) for r in rules.rules]
        self.store = AlertStore(config.client_config, config.state_topic, config.history_topic)
        loaded = self.store.load()
        self.states = {e.rule.name: RuleState.from_json(loaded[RULE_KEY + e.rule.name])
                       if RULE_KEY + e.rule.name in loaded else RuleState() for e in self.engines}
        self.outbox = {k[len(OUTBOX_KEY):]: v for k, v in loaded.items() if k.startswith(OUTBOX_KEY)}
        longest = max(max(r.window_seconds, r.after_seconds) for r in rules.rules)
        self.lookback = longest + rules.grace_seconds + rules.late_horizon_seconds + LOOKBACK_MARGIN_SECONDS
        self.reader = PartialsReader(config.client_config, config.partials_topic)
        self.index = PartialIndex()

    def tick(self) -> TickReport:
        now = self.clock()
        report = TickReport()
        index, cutoff = self.index, int(now) - self.lookback
        partials = self.reader.read(int((now - self.lookback) * 1000))
        records: list[Record] = []
        history = self.config.history_topic
        for partial in sorted(partials, key=lambda p: p.emitted_ms):
            if partial.records() and all(pane < cutoff for rp in partial.rules.values() for pane in rp.panes):
                # Older than every window still open or correctable: reported, not counted.
                records.append((history, "", {"at": now, "event": "too_late", "rule": "*", "partial": partial.key,
                                              "records": partial.records()}))
                log.warning("partial %s holds %d rule match(es) older than the late horizon: not counted",
                            partial.key, partial.records())
            index.add(partial)
        index.prune(cutoff)
        report.partials = len(partials)
        measured = self.measure_lag() if self.measure_lag else None
        for engine in self.engines:
            state = self.states[engine.rule.name]
            outcome = engine.evaluate(state, index, now, measured, self.read_failures)
            records.append((self.config.state_topic, RULE_KEY + engine.rule.name, state.to_json()))
            for event in outcome.events:
                records.append((history, engine.rule.name, {"at": now, **event}))
            for n in outcome.notifications:
                report.notifications += 1
                for channel in targets(engine.rule, self.channels):
                    # One entry per notification and channel: each channel gets it once, whatever the others do.
                    oid = f"{n.id}/{channel}"
                    if oid not in self.outbox:
                        entry = self.outbox[oid] = {**new_entry(n, now), "channel": channel}
                        records.append((self.config.state_topic, OUTBOX_KEY + oid, entry))
        records += self._expired_entries(now)
        self.store.commit(records)
        self._dispatch(report)
        return report

    def _expired_entries(self, now: float) -> list[Record]:
        cutoff = now - self.rules.late_horizon_seconds - SENT_RETENTION_SECONDS
        expired = [nid for nid, e in self.outbox.items() if e["status"] == SENT and e.get("sent_at", now) < cutoff]
        for nid in expired:
            del self.outbox[nid]
        return [(self.config.state_topic, OUTBOX_KEY + nid, None) for nid in expired]

    def _dispatch(self, report: TickReport) -> None:
        lease = self.config.claim_lease_seconds
        for nid, entry in sorted(self.outbox.items(), key=lambda kv: kv[1]["created"]):
            now = self.clock()
            channel = self.channels.get(entry["channel"])
            if not due(entry, now, lease):
                continue
            if channel is None:
                log.warning("alert %s waits for channel %r, which the rules file no longer declares", nid,
                            entry["channel"])
                continue
            n = from_json(entry["notification"])
            claim = claimed(entry, now)
            # Committed before the channel is called: a raced or restarted evaluator sees the claim.
            self.store.commit([(self.config.state_topic, OUTBOX_KEY + nid, claim)])
            self.outbox[nid] = claim
            result = send(channel, n)
            done = settled(claim, result, self.clock())
            attempt = {"at": self.clock(), "event": "attempt", "rule": n.rule, "id": n.id,
                       "transition": n.transition.value, "channel": entry["channel"],
                       "attempt": claim["attempts"], "delivered": result.delivered, "retryable": result.retryable,
                       "reply": result.reply}
            self.store.commit([(self.config.state_topic, OUTBOX_KEY + nid, done),
                               (self.config.history_topic, n.rule, attempt)])
            self.outbox[nid] = done
            if done["status"] == SENT:
                report.sent += 1
            else:
                report.failed += 1
                log.warning("alert %s (%s %s) not sent, retried later: %s", nid, n.rule, n.transition.value,
                            result.reply)

    def close(self) -> None:
        self.reader.close()
        self.store.close()
