"""The function's side: per page, every rule's partial aggregates, emitted as one record to the partials topic.

One record per page, keyed `project/logstore/shard/<position of the page's first log group>` and carrying the
stretch of the shard it covers. A retry that starts at the same cursor pulls the same pages, so its records
overwrite the earlier attempt's (same key); one that pages differently covers the same stretch, and the
evaluator keeps only the newest record of overlapping stretches (see `alerting.partials`). Exactly-once, the
record joins the page's transaction through the observer hook; at-least-once, the checkpoint waits for it.

Cost per record: one `orjson.loads` of the projected record, then per rule a dict look-up or two and the
condition's closures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from alerting.aggregates import Agg, bucket
from alerting.rules import MEASURED, Rule, RuleSet
from common.cursors import cursor_position
from processor.delivery.observers import Emit, ProjectedGroup, ProjectedPage

# Samples per rule and page: enough for a notification to show a few records and where to find them.
SAMPLES_PER_PAGE = 20
_NUMBERS = (int, float)
_UNHASHABLE = (list, dict)
PARTIAL_VERSION = 1

# pane start -> group -> partial aggregate; and the samples kept per (pane, group)
Panes = dict[int, dict[Any, Agg]]
Samples = dict[tuple[int, str], list[dict[str, Any]]]
# One rule's step over one log group: parsed records, the indices of those matching the rule's condition, their
# event times, raw values, the page cursor.
GroupStep = Callable[[list[dict[str, Any]], Iterable[int], list[int], Sequence[tuple[bytes | None, bytes]], str,
                      Panes, Samples], None]


class AlertObserver:
    """A `BatchObserver` computing each rule's partials for a page and emitting them to `topic`."""

    def __init__(self, rules: RuleSet, topic: str) -> None:
        self.rules = rules
        self.topic = topic
        # Lag and failed invocations are measured by the evaluator, from SLS: nothing to compute here.
        self._rules = [rule for rule in rules.rules if rule.kind not in MEASURED]
        self._steps = [(rule.name, _group_step(rule), rule.condition.text if rule.condition else None)
                       for rule in self._rules if rule.aggregate != "dead_letter_rate"]
        self._dead_letter_rules = [r for r in self._rules if r.aggregate == "dead_letter_rate"]
        # Rules with the same condition (a record rule and a count of the same speeding) share one test per record.
        self._conditions = {r.condition.text: r.condition.test for r in rules.rules if r.condition}

    def on_batch(self, page: ProjectedPage, emit: Emit) -> None:
        state: dict[str, tuple[Panes, Samples]] = {r.name: ({}, {}) for r in self._rules}
        steps = [(step, condition, *state[name]) for name, step, condition in self._steps]
        loads = orjson.loads
        for group in page.groups:
            if self._dead_letter_rules:
                _count_dead_letters(group, self._dead_letter_rules, state)
            if not group.records:
                continue
            records = [loads(value) for _key, value in group.records]
            times = group.event_times()
            matching: dict[str | None, Iterable[int]] = {None: range(len(records))}
            for text, test in self._conditions.items():
                matching[text] = [i for i, record in enumerate(records) if test(record)]
            for step, condition, panes, samples in steps:
                step(records, matching[condition], times, group.records, page.cursor, panes, samples)
        where = page.groups[0].where if page.groups else None
        project, logstore = (where.project, where.logstore) if where else ("", "")
        begin = cursor_position(page.cursor)
        doc = {
            "version": PARTIAL_VERSION, "project": project, "logstore": logstore, "shard": page.shard,
            "begin": begin, "end": cursor_position(page.next_cursor), "cursor": page.cursor,
            "emitted_ms": int(time.time() * 1000),
            "rules": {name: _rule_doc(*parts) for name, parts in state.items()},
        }
        key = f"{project}/{logstore}/{page.shard}/{begin}".encode()
        emit(self.topic, key, orjson.dumps(doc))


def _count_dead_letters(group: ProjectedGroup, rules: list[Rule], state: dict[str, tuple[Panes, Samples]]) -> None:
    """Per log group, in the pane of its first log: how many logs were read and how many were dead-lettered."""
    logs = group.group.Logs
    if not logs:
        return
    t = logs[0].Time
    for rule in rules:
        panes = state[rule.name][0]
        agg = panes.setdefault(t - t % rule.hop_seconds, {}).setdefault("", Agg())
        agg.n += len(logs)
        agg.add_number(float(len(group.rejected)))


def _rule_doc(panes: Panes, samples: Samples) -> dict[str, Any]:
    return {
        "panes": {str(pane): {str(g): agg.to_json() for g, agg in groups.items()} for pane, groups in panes.items()},
        "samples": [[pane, group, s] for (pane, group), ss in samples.items() for s in ss],
    }


def _group_step(rule: Rule) -> GroupStep:
    """One rule over one log group, as a single loop specialised to the rule: the per-record path of the function.

    A sample (the record and its cursor) is kept when a (pane, group) first appears, up to SAMPLES_PER_PAGE.
    """
    key, field, hop = rule.key, rule.value_field, rule.hop_seconds
    kind, aggregate = rule.kind, rule.aggregate
    absence = kind == "absence"
    numeric = field is not None and (kind == "record" or aggregate in ("sum", "avg", "min", "max", "percentile"))
    histogram = kind == "window" and aggregate == "percentile"
    distinct = kind == "window" and aggregate == "distinct"
    buckets: dict[float, int] = {}  # speeds repeat: a value's bucket is computed once per instance

    def step(records: list[dict[str, Any]], indices: Iterable[int], times: list[int],
             raws: Sequence[tuple[bytes | None, bytes]], cursor: str, panes: Panes, samples: Samples) -> None:
        for i in indices:
            record = records[i]
            if key is None:
                group: Any = ""
            else:
                group = record.get(key)
                # Grouped by the value itself (str() per record is measurable); JSON makes the keys text.
                if group is None or type(group) in _UNHASHABLE:
                    continue
            t = times[i]
            pane = t - t % hop
            groups = panes.get(pane)
            if groups is None:
                groups = panes[pane] = {}
            agg = groups.get(group)
            if agg is None:
                agg = groups[group] = Agg()
                if len(samples) < SAMPLES_PER_PAGE:
                    samples[(pane, str(group))] = [{"record": raws[i][1].decode(), "cursor": cursor, "time": t}]
            agg.n += 1
            if absence:
                agg.add_number(t)
            elif numeric:
                v = record.get(field)  # type: ignore[arg-type]
                if type(v) in _NUMBERS:  # bool is not a number here
                    agg.values += 1
                    agg.total += v
                    if v < agg.lo:  # noqa: PLR1730 (a call to min() costs more on this path)
                        agg.lo = v
                    if v > agg.hi:  # noqa: PLR1730
                        agg.hi = v
                    if histogram:
                        b = buckets.get(v)
                        if b is None:
                            b = buckets[v] = bucket(v)
                        hist = agg.hist
                        if hist is None:
                            hist = agg.hist = {}
                        hist[b] = hist.get(b, 0) + 1
            elif distinct:
                v = record.get(field)  # type: ignore[arg-type]
                if v is not None and type(v) not in _UNHASHABLE:
                    agg.add_distinct(v)

    return step
