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
from collections.abc import Callable
from typing import Any

import orjson

from alerting.aggregates import Agg
from alerting.rules import Rule, RuleSet
from common.cursors import cursor_position
from processor.delivery.observers import Emit, ProjectedPage

SAMPLES_PER_PANE = 3
PARTIAL_VERSION = 1

# pane start -> group -> partial aggregate; and the samples kept per (pane, group)
Panes = dict[int, dict[str, Agg]]
Samples = dict[tuple[int, str], list[dict[str, Any]]]
Adder = Callable[[dict[str, Any], int, bytes, str, Panes, Samples], None]


class AlertObserver:
    """A `BatchObserver` computing each rule's partials for a page and emitting them to `topic`."""

    def __init__(self, rules: RuleSet, topic: str) -> None:
        self.rules = rules
        self.topic = topic
        self._adders = [(rule.name, _adder(rule)) for rule in rules.rules]

    def on_batch(self, page: ProjectedPage, emit: Emit) -> None:
        state: dict[str, tuple[Panes, Samples]] = {name: ({}, {}) for name, _ in self._adders}
        adders = [(add, *state[name]) for name, add in self._adders]
        loads = orjson.loads
        project = logstore = ""
        for group in page.groups:
            if not group.records:
                continue
            project, logstore = group.where.project, group.where.logstore
            for (_key, value), t in zip(group.records, group.event_times(), strict=True):
                record = loads(value)
                for add, panes, samples in adders:
                    add(record, t, value, page.cursor, panes, samples)
        if not project and page.groups:
            project, logstore = page.groups[0].where.project, page.groups[0].where.logstore
        begin = cursor_position(page.cursor)
        doc = {
            "version": PARTIAL_VERSION, "project": project, "logstore": logstore, "shard": page.shard,
            "begin": begin, "end": cursor_position(page.next_cursor), "cursor": page.cursor,
            "emitted_ms": int(time.time() * 1000),
            "rules": {name: _rule_doc(*state[name]) for name, _ in self._adders},
        }
        key = f"{project}/{logstore}/{page.shard}/{begin}".encode()
        emit(self.topic, key, orjson.dumps(doc))


def _rule_doc(panes: Panes, samples: Samples) -> dict[str, Any]:
    return {
        "panes": {str(pane): {g: agg.to_json() for g, agg in groups.items()} for pane, groups in panes.items()},
        "samples": [[pane, group, s] for (pane, group), ss in samples.items() for s in ss],
    }


def _adder(rule: Rule) -> Adder:
    """The per-record step of one rule, specialised so the hot path tests nothing it does not need."""
    test = rule.condition.test if rule.condition else None
    key, field, hop = rule.key, rule.value_field, rule.hop_seconds
    per_key_samples = rule.kind == "record"
    numeric = rule.kind == "record" or rule.aggregate in ("sum", "avg", "min", "max", "percentile")
    histogram = rule.aggregate == "percentile" and rule.kind == "window"
    distinct = rule.aggregate == "distinct" and rule.kind == "window"
    absence = rule.kind == "absence"

    def add(record: dict[str, Any], t: int, raw: bytes, cursor: str, panes: Panes, samples: Samples) -> None:
        if test is not None and not test(record):
            return
        if key is None:
            group = ""
        else:
            k = record.get(key)
            if k is None:
                return
            group = str(k)
        pane = t - t % hop
        groups = panes.get(pane)
        if groups is None:
            groups = panes[pane] = {}
        agg = groups.get(group)
        if agg is None:
            agg = groups[group] = Agg()
        agg.n += 1
        if absence:
            agg.add_number(t)
        elif field is not None:
            v = record.get(field)
            if numeric and isinstance(v, (int, float)) and not isinstance(v, bool):
                agg.add_number(v)
                if histogram:
                    agg.add_bucket(v)
            elif distinct and v is not None:
                agg.add_distinct(v)
        slot = (pane, group if per_key_samples else "")
        kept = samples.get(slot)
        if kept is None:
            kept = samples[slot] = []
        if len(kept) < (1 if per_key_samples else SAMPLES_PER_PANE):
            kept.append({"record": raw.decode(), "cursor": cursor, "time": t})

    return add
