"""The function's side: per page, every rule's partial aggregates, emitted as one record to the partials topic.

One record per page, keyed `project/logstore/shard/<position of the page's first log group>` and carrying the
stretch of the shard it covers. A retry that starts at the same cursor pulls the same pages, so its records
overwrite the earlier attempt's (same key); one that pages differently covers the same stretch, and the
evaluator keeps only the newest record of overlapping stretches (see `alerting.partials`). Exactly-once, the
record joins the page's transaction through the observer hook; at-least-once, the checkpoint waits for it.

Cost: the rules read the projection's columns, not the records, and each condition is tested once per page for
all the rules that share it; the per-record work is C-level (`alerting.page_partials`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from alerting.aggregates import Agg, to_columns
from alerting.page_partials import PageColumns, rule_partial
from alerting.rules import MEASURED, Rule, RuleSet
from common.cursors import cursor_position
from processor.config import FieldSpec
from processor.delivery.observers import Emit, ProjectedGroup, ProjectedPage

PARTIAL_VERSION = 2


class AlertObserver:
    """A `BatchObserver` computing each rule's partials for a page and emitting them to `topic`."""

    def __init__(self, rules: RuleSet, topic: str, projected: Sequence[FieldSpec]) -> None:
        """`projected`: the projection's fields; a rule reading a field not among them fails here."""
        rules.check_fields({f.output for f in projected})
        self.rules = rules
        self.topic = topic
        # Lag and failed invocations are measured by the evaluator, from SLS: nothing to compute here.
        rules_here = [rule for rule in rules.rules if rule.kind not in MEASURED]
        self._field_rules = [r for r in rules_here if r.aggregate != "dead_letter_rate"]
        self._dead_letter_rules = [r for r in rules_here if r.aggregate == "dead_letter_rate"]
        read = {f for r in self._field_rules for f in r.fields}
        self._specs = {f.output: f for f in projected if f.output in read}
        # Rules with the same condition (a record rule and a count of the same speeding) share one mask per page.
        self._conditions = {r.condition.text: r.condition.mask for r in self._field_rules if r.condition}

    def on_batch(self, page: ProjectedPage, emit: Emit) -> None:
        docs: dict[str, Any] = {}
        if self._field_rules:
            columns = PageColumns.of(page, self._specs)
            n = len(columns.times)
            masks: dict[str | None, Sequence[bool] | None] = {None: None}
            masks.update((text, mask(columns.fields, n)) for text, mask in self._conditions.items())
            for rule in self._field_rules:
                docs[rule.name] = rule_partial(rule, columns, masks[rule.condition.text if rule.condition else None])
        for rule in self._dead_letter_rules:
            docs[rule.name] = _dead_letters(page.groups, rule)
        where = page.groups[0].where if page.groups else None
        project, logstore = (where.project, where.logstore) if where else ("", "")
        begin = cursor_position(page.cursor)
        doc = {
            "version": PARTIAL_VERSION, "project": project, "logstore": logstore, "shard": page.shard,
            "begin": begin, "end": cursor_position(page.next_cursor), "cursor": page.cursor,
            "emitted_ms": int(time.time() * 1000), "rules": docs,
        }
        key = f"{project}/{logstore}/{page.shard}/{begin}".encode()
        emit(self.topic, key, orjson.dumps(doc))


def _dead_letters(groups: Sequence[ProjectedGroup], rule: Rule) -> dict[str, Any]:
    """Per log group, in the pane of its first log: how many logs were read and how many were dead-lettered."""
    panes: dict[int, dict[Any, Agg]] = {}
    for group in groups:
        logs = group.group.Logs
        if not logs:
            continue
        t = logs[0].Time
        agg = panes.setdefault(t - t % rule.hop_seconds, {}).setdefault("", Agg())
        agg.n += len(logs)
        agg.add_number(float(len(group.rejected)))
    return {"panes": {str(pane): to_columns(groups) for pane, groups in panes.items()}, "samples": []}
