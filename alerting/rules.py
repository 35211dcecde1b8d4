"""The rules file (YAML) as frozen dataclasses, validated at start-up; every error names rule, key and line.

Three kinds of rule:
  * `record`: a condition per record, alerting per `key` (a car over 120 km/h), batched into one digest per
    evaluation, each key then quiet for `repeat`;
  * `window`: an aggregate (count, sum, avg, min, max, pNN, distinct) over event-time windows across all shards,
    with an optional filter and group-by, tumbling (`window`) or hopping (`window` + `hop`);
  * `absence`: nothing (matching `filter`) from a key, or from the whole logstore, for `after`;
  * `lag`: per shard, how far the function's checkpoint is behind the newest data, in seconds (`sls-kafka lag`);
  * `failed_invocations`: per function and shard, the invocations that failed after their retries, in the SLS
    trigger's own log (its `logConfig` logstore), over tumbling wall-clock windows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerting.expressions import Condition
from alerting.rules_reader import RulesError, Where, unknown
from alerting.yaml_lines import Located, load_located

__all__ = ["Rule", "RuleSet", "RulesError", "load_rules", "parse_rules"]

KINDS = ("record", "window", "absence", "lag", "failed_invocations")
MEASURED = ("lag", "failed_invocations")  # the evaluator reads these from SLS; the function computes nothing
TRIGGER_LOG_DEFAULTS = ("SLS_PROJECT", "SLS_TRIGGER_LOGSTORE")  # a failed_invocations rule's project, logstore
SEVERITIES = ("info", "warning", "critical")
# And pNN, a percentile. dead_letter_rate: the percentage of the logs read that went to the dead-letter topic.
AGGREGATES = ("count", "sum", "avg", "min", "max", "distinct", "dead_letter_rate")
RECORDLESS = ("count", "dead_letter_rate")  # aggregates that read no field
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
_THRESHOLD = re.compile(r"^\s*(>=|<=|!=|==|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
MAX_PANES_PER_WINDOW = 1440

COMMON_KEYS = {"name", "type", "severity", "description", "labels", "for", "keep_firing", "repeat", "send_resolved",
               "silence_until", "channels"}
KIND_KEYS = {
    "record": {"when", "key", "value", "every"},
    "window": {"aggregate", "field", "filter", "group_by", "window", "hop", "threshold"},
    "absence": {"key", "filter", "after", "every"},
    "lag": {"threshold", "every"},
    "failed_invocations": {"project", "logstore", "window", "threshold"},
}


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    severity: str = "warning"
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    for_windows: int = 1  # consecutive breaching windows before firing
    keep_firing: int = 0  # clear windows tolerated before resolving (hysteresis against flapping)
    repeat_seconds: int = 4 * 3600
    send_resolved: bool = True
    silence_until: int = 0  # epoch seconds; nothing is sent before it
    channels: tuple[str, ...] = ()  # names in the file's `channels:` section; empty: every channel
    condition: Condition | None = None  # record: `when`; window and absence: `filter`
    key: str | None = None  # record and absence: per key; window: `group_by`
    value_field: str | None = None  # record: the field reported per key; window: the aggregated field
    aggregate: str = "count"
    percentile: float = 0.0
    window_seconds: int = 60
    hop_seconds: int = 60  # the pane: partials are per hop, windows merge window/hop panes
    comparison: str = ">"
    threshold: float = 0.0
    after_seconds: int = 0
    # failed_invocations: (project, logstore) of the trigger's log; "": TRIGGER_LOG_DEFAULTS
    trigger_log: tuple[str, str] | None = None

    @property
    def fields(self) -> frozenset[str]:
        """The projected fields the rule reads."""
        own = {f for f in (self.key, self.value_field) if f}
        return frozenset(own) | (self.condition.fields if self.condition else frozenset())


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    grace_seconds: int = 60  # a window closes at its end plus this, by wall clock
    late_horizon_seconds: int = 3600  # closed windows kept this long for corrections from late records
    source: str = ""
    # The file's `channels:` section as written; `alerting.channels.channels_from_config` builds the channels
    # (the evaluator and `alerts check` do; the function never needs them).
    channels: Mapping[str, Any] = field(default_factory=dict)

    def check_fields(self, projected: frozenset[str] | set[str], variable: str = "PROJECTION_FIELDS") -> None:
        """Every field a rule reads must be projected: the observer sees projected records only."""
        for rule in self.rules:
            missing = sorted(rule.fields - set(projected))
            if missing:
                msg = (f"{self.source}: rule {rule.name!r} reads field(s) {', '.join(missing)}, which {variable} "
                       f"does not project ({', '.join(sorted(projected))}); add them there")
                raise RulesError(msg)


def load_rules(path: str | Path) -> RuleSet:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read rules file {p}: {exc.strerror or exc}"
        raise RulesError(msg) from None
    return parse_rules(text, str(p))


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    try:
        doc = load_located(text, source)
    except ValueError as exc:
        raise RulesError(str(exc)) from None
    if not isinstance(doc, Located):
        msg = f"{source}: expected a mapping with a 'rules' list"
        raise RulesError(msg)
    unknown(doc, {"rules", "evaluator", "channels"}, source, "the file")
    channels = doc.get("channels") or Located()
    if not isinstance(channels, Located):
        msg = f"{source}:{doc.lines['channels']}: 'channels' must be a mapping of channel names to their settings"
        raise RulesError(msg)
    ev = doc.get("evaluator") or Located()
    if not isinstance(ev, Located):
        msg = f"{source}:{doc.lines['evaluator']}: 'evaluator' must be a mapping"
        raise RulesError(msg)
    unknown(ev, {"grace", "late_horizon"}, source, "evaluator")
    where = Where(source, "evaluator", ev)
    grace = where.duration("grace", 60, minimum=0)
    late = where.duration("late_horizon", 3600, minimum=0)
    items = doc.get("rules")
    if not isinstance(items, list) or not items:
        line = doc.lines.get("rules", 1)
        msg = f"{source}:{line}: 'rules' must be a non-empty list of rules"
        raise RulesError(msg)
    rules, seen = [], set()
    for item in items:
        rule = _rule(item, source, frozenset(channels))
        if rule.name in seen:
            msg = f"{source}:{item.line}: rule {rule.name!r}: key 'name': the name is used twice"
            raise RulesError(msg)
        seen.add(rule.name)
        rules.append(rule)
    return RuleSet(tuple(rules), grace, late, source, channels)


def _rule(item: Any, source: str, channel_names: frozenset[str]) -> Rule:
    if not isinstance(item, Located):
        msg = f"{source}: each rule must be a mapping, got {item!r}"
        raise RulesError(msg)
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        line = item.lines.get("name", item.line)
        msg = (f"{source}:{line}: rule at line {item.line}: key 'name': expected a name of letters, digits, '.', "
               f"'_' or '-', got {name!r}")
        raise RulesError(msg)
    w = Where(source, f"rule {name!r}", item)
    kind = w.text("type", choices=KINDS)
    if kind is None:
        raise w.fail("type", f"missing; one of {', '.join(KINDS)}")
    unknown(item, COMMON_KEYS | KIND_KEYS[kind], source, f"rule {name!r} (type {kind})")
    labels = item.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, (str, int, float)) for v in labels.values()):
        raise w.fail("labels", "expected a mapping of names to texts")
    common: dict[str, Any] = {
        "name": name, "kind": kind, "severity": w.text("severity", "warning", SEVERITIES),
        "description": w.text("description") or "", "labels": {str(k): str(v) for k, v in labels.items()},
        "for_windows": w.integer("for", 1, 1), "keep_firing": w.integer("keep_firing", 0, 0),
        "send_resolved": w.boolean("send_resolved", True), "silence_until": w.instant("silence_until"),
        "channels": _channels(w, channel_names),
    }
    if kind == "record":
        when = w.condition("when")
        if when is None:
            raise w.fail("when", "missing; a condition such as 'speed > 120'")
        every = w.duration("every", 60)
        return Rule(**common, condition=when, key=_required_text(w, "key"), value_field=w.text("value"),
                    repeat_seconds=w.duration("repeat", 3600), window_seconds=every, hop_seconds=every)
    if kind == "absence":
        after = w.duration("after", 0)
        every = w.duration("every", 60)
        return Rule(**common, condition=w.condition("filter"), key=w.text("key"), after_seconds=after,
                    repeat_seconds=w.duration("repeat", 4 * 3600), window_seconds=every, hop_seconds=every)
    if kind in MEASURED:
        every = w.duration("every", 60) if kind == "lag" else w.duration("window", 300)
        trigger_log = (w.text("project") or "", w.text("logstore") or "") if kind != "lag" else None
        comparison, threshold = _threshold(w)
        return Rule(**common, comparison=comparison, threshold=threshold, window_seconds=every, hop_seconds=every,
                    repeat_seconds=w.duration("repeat", 4 * 3600), trigger_log=trigger_log)
    return _window_rule(w, common)


def _channels(w: Where, declared: frozenset[str]) -> tuple[str, ...]:
    names = w.m.get("channels", [])
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise w.fail("channels", f"expected a list of channel names, got {names!r}")
    for name in names:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none are declared"
            raise w.fail("channels", f"{name!r} is not in the file's channels: section ({known})")
    return tuple(names)


def _required_text(w: Where, key: str) -> str:
    value = w.text(key)
    if value is None:
        raise w.fail(key, "missing")
    return value


def _window_rule(w: Where, common: dict[str, Any]) -> Rule:
    aggregate = _required_text(w, "aggregate")
    percentile = 0.0
    if (m := _PERCENTILE.match(aggregate)) is not None:
        percentile = float(m[1])
        if not 0 < percentile < 100:
            raise w.fail("aggregate", f"a percentile is p1 to p99, got {aggregate!r}")
    elif aggregate not in AGGREGATES:
        raise w.fail("aggregate", f"{aggregate!r} is not one of {', '.join(AGGREGATES)} or pNN (e.g. p95)")
    value_field = w.text("field")
    if aggregate in RECORDLESS and value_field is not None:
        raise w.fail("field", f"{aggregate} reads no field: leave 'field' out")
    if aggregate not in RECORDLESS and value_field is None:
        raise w.fail("field", f"{aggregate} needs the field it aggregates")
    if aggregate == "dead_letter_rate":
        for key in ("filter", "group_by"):
            if key in w.m:
                raise w.fail(key, "a dead-lettered log has no projected fields to filter or group by")
    window = w.duration("window", 0)
    hop = w.duration("hop", window)
    if hop > window or window % hop:
        raise w.fail("hop", f"the hop ({hop} s) must divide the window ({window} s)")
    if window // hop > MAX_PANES_PER_WINDOW:
        raise w.fail("hop", f"at most {MAX_PANES_PER_WINDOW} hops per window, got {window // hop}")
    comparison, threshold = _threshold(w)
    return Rule(**common, condition=w.condition("filter"), key=w.text("group_by"), value_field=value_field,
                aggregate="percentile" if percentile else aggregate, percentile=percentile, window_seconds=window,
                hop_seconds=hop, comparison=comparison, threshold=threshold,
                repeat_seconds=w.duration("repeat", 4 * 3600))


def _threshold(w: Where) -> tuple[str, float]:
    raw = w.m.get("threshold")
    m = _THRESHOLD.match(str(raw)) if isinstance(raw, str) else None
    if m is None:
        raise w.fail("threshold", f"expected a comparison and a number such as '> 50' or '< 5', got {raw!r}")
    return m[1], float(m[2])
