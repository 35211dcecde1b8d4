"""The evaluator's view of the partials topic: the latest partial per page, merged across shards per pane.

A retried range re-emits its pages. Same start cursor, same key: the new record replaces the old one. A retry
that paged differently (it resumed mid-range, or sized pages otherwise) emits pages overlapping the earlier
attempt's: of overlapping stretches of a shard only the newest is kept, since the newer attempt delivers the
whole stretch from its start to the range's end before it succeeds. So no record is counted twice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson

from alerting.aggregates import Agg, from_columns

Stream = tuple[str, str, int]  # project, logstore, shard


@dataclass
class RulePartial:
    panes: dict[int, dict[str, Agg]]
    samples: list[tuple[int, str, dict[str, Any]]]


@dataclass
class Partial:
    key: str
    stream: Stream
    begin: int
    end: int
    emitted_ms: int
    rules: dict[str, RulePartial]

    def overlaps(self, other: Partial) -> bool:
        return self.begin < other.end and other.begin < self.end

    def records(self) -> int:
        return sum(a.n for rp in self.rules.values() for groups in rp.panes.values() for a in groups.values())


def decode(key: bytes | None, value: bytes) -> Partial:
    """One record of the partials topic; a record that is not one raises ValueError naming what is wrong."""
    try:
        doc = orjson.loads(value)
        # Version 1 (an object per group) is still read: an upgrade's first evaluations meet the older records.
        groups_of = _v1_groups if doc.get("version") == 1 else from_columns
        rules = {
            name: RulePartial(
                {int(pane): groups_of(groups) for pane, groups in r["panes"].items()},
                [(int(pane), str(group), sample) for pane, group, sample in r["samples"]])
            for name, r in doc["rules"].items()
        }
        stream = (str(doc["project"]), str(doc["logstore"]), int(doc["shard"]))
        return Partial((key or b"").decode(), stream, int(doc["begin"]), int(doc["end"]), int(doc["emitted_ms"]),
                       rules)
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        msg = f"partial record {key!r} is not one the alert observer writes: {exc!r}"
        raise ValueError(msg) from None


def _v1_groups(groups: dict[str, Any]) -> dict[str, Agg]:
    return {g: Agg.from_json(a) for g, a in groups.items()}


class PartialIndex:
    """The partials currently in force, by shard; `panes(rule)` merges them."""

    def __init__(self) -> None:
        self._streams: dict[Stream, list[Partial]] = defaultdict(list)

    def add(self, partial: Partial) -> list[Partial]:
        """Put `partial` in force; returns the partials it replaced (or `[partial]` when it is the older one)."""
        kept = self._streams[partial.stream]
        rivals = [p for p in kept if p.key == partial.key or p.overlaps(partial)]
        if any(p.key != partial.key and p.emitted_ms > partial.emitted_ms for p in rivals):
            return [partial]
        for p in rivals:
            kept.remove(p)
        kept.append(partial)
        return rivals

    def partials(self) -> list[Partial]:
        return [p for kept in self._streams.values() for p in kept]

    def panes(self, rule: str) -> dict[int, dict[str, Agg]]:
        out: dict[int, dict[str, Agg]] = defaultdict(dict)
        for partial in self.partials():
            rp = partial.rules.get(rule)
            if rp is None:
                continue
            for pane, groups in rp.panes.items():
                merged = out[pane]
                for group, agg in groups.items():
                    total = merged.get(group)
                    if total is None:
                        total = merged[group] = Agg()
                    total.merge(agg)
        return out

    def samples(self, rule: str, first_pane: int, end: int, group: str | None = None,
                limit: int = 3) -> list[tuple[Stream, dict[str, Any]]]:
        found = []
        for partial in self.partials():
            rp = partial.rules.get(rule)
            for pane, g, sample in rp.samples if rp else ():
                if first_pane <= pane < end and (group is None or g == group):
                    found.append((partial.stream, sample))
        found.sort(key=lambda s: s[1]["time"])
        return found[:limit]

    def prune(self, before: int) -> None:
        """Forget partials whose every pane starts before `before` (out of every window and the late horizon)."""
        for stream, kept in self._streams.items():
            self._streams[stream] = [p for p in kept
                                     if any(pane >= before for rp in p.rules.values() for pane in rp.panes)]
