"""Mergeable partial aggregates: what one page contributes to one (rule, pane, group), and their merge.

Count, sum, min and max merge exactly. Distinct keeps the set of values (exact; a pane's set of car ids is a
few KB). Percentiles use a log-bucket histogram (DDSketch's idea): a value's bucket is ceil(log_gamma(v)), so
any quantile is within 1% of a true value of the data, and merging is adding bucket counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

RELATIVE_ACCURACY = 0.01
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)


def bucket(v: float) -> int:
    """Histogram key: 0 for zero, +k for positive values, -k for negative ones (k >= 1)."""
    if v == 0:
        return 0
    k = math.ceil(math.log(abs(v)) / _LOG_GAMMA)
    # Shifted so every non-zero key is >= 1 in magnitude (values below 1e-300 share the smallest bucket).
    k = max(k + 35_000, 1)
    return k if v > 0 else -k


def bucket_value(key: int) -> float:
    if key == 0:
        return 0.0
    k = abs(key) - 35_000
    v = 2 * _GAMMA ** k / (_GAMMA + 1)
    return v if key > 0 else -v


class Agg:
    """One partial: records counted, and what the rule's aggregate needs of their values."""

    __slots__ = ("distinct", "hi", "hist", "lo", "n", "total", "values")

    def __init__(self) -> None:
        self.n = 0
        self.values = 0  # records that had a numeric value
        self.total = 0.0
        self.lo = math.inf
        self.hi = -math.inf
        self.hist: dict[int, int] | None = None
        self.distinct: set[Any] | None = None

    def add_number(self, v: float) -> None:
        self.values += 1
        self.total += v
        self.lo = min(self.lo, v)
        self.hi = max(self.hi, v)

    def add_bucket(self, v: float) -> None:
        if self.hist is None:
            self.hist = {}
        k = bucket(v)
        self.hist[k] = self.hist.get(k, 0) + 1

    def add_distinct(self, v: Any) -> None:
        if self.distinct is None:
            self.distinct = set()
        self.distinct.add(v)

    def merge(self, other: Agg) -> None:
        self.n += other.n
        self.values += other.values
        self.total += other.total
        self.lo = min(self.lo, other.lo)
        self.hi = max(self.hi, other.hi)
        if other.hist:
            if self.hist is None:
                self.hist = {}
            for k, c in other.hist.items():
                self.hist[k] = self.hist.get(k, 0) + c
        if other.distinct:
            if self.distinct is None:
                self.distinct = set()
            self.distinct |= other.distinct

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Agg:
        """One group of a version-1 partial (an object per group), as functions before version 2 wrote them."""
        agg = cls()
        agg.n = int(doc["n"])
        if doc.get("v"):
            agg.values, agg.total, agg.lo, agg.hi = int(doc["v"]), float(doc["s"]), float(doc["lo"]), float(doc["hi"])
        if doc.get("h"):
            agg.hist = {int(k): int(c) for k, c in doc["h"]}
        if doc.get("d"):
            agg.distinct = set(doc["d"])
        return agg


def to_columns(groups: Mapping[Any, Agg]) -> dict[str, list[Any]]:
    """A pane's partials as columns, one entry per group: "g" the groups, "n" the records, then where any group
    has them "v" records with a value, "s" "lo" "hi" their sum, lowest and highest (null without values), "h" the
    histogram's [bucket, count] pairs, "d" the distinct values. `from_columns` reads it back."""
    aggs = list(groups.values())
    doc: dict[str, list[Any]] = {"g": list(groups), "n": [a.n for a in aggs]}
    if any(a.values for a in aggs):
        doc["v"] = [a.values for a in aggs]
        doc["s"] = [a.total for a in aggs]
        doc["lo"] = [a.lo if a.values else None for a in aggs]
        doc["hi"] = [a.hi if a.values else None for a in aggs]
    if any(a.hist for a in aggs):
        doc["h"] = [list((a.hist or {}).items()) for a in aggs]
    if any(a.distinct for a in aggs):
        doc["d"] = [list(a.distinct or ()) for a in aggs]
    return doc


def from_columns(doc: Mapping[str, Any]) -> dict[str, Agg]:
    """The partials of a pane written by `to_columns` (or a keyed rule's subset of it), by group as text."""
    out: dict[str, Agg] = {}
    v, s, lo, hi, h, d = (doc.get(k) for k in ("v", "s", "lo", "hi", "h", "d"))
    for i, (group, n) in enumerate(zip(doc["g"], doc["n"], strict=True)):
        agg = Agg()
        agg.n = int(n)
        if v and v[i]:
            agg.values = int(v[i])
            agg.total = float(s[i]) if s else 0.0
            agg.lo = float(lo[i]) if lo else math.inf
            agg.hi = float(hi[i])
        if h and h[i]:
            agg.hist = {int(k): int(c) for k, c in h[i]}
        if d and d[i]:
            agg.distinct = set(d[i])
        out[str(group)] = agg
    return out


def merged(parts: Iterable[Agg]) -> Agg:
    total = Agg()
    for part in parts:
        total.merge(part)
    return total


def value_of(agg: Agg, aggregate: str, percentile: float = 0.0) -> float | None:
    """The rule's value for merged partials; None when there is nothing to aggregate (no records with a value)."""
    if aggregate == "count":
        return float(agg.n)
    if aggregate == "distinct":
        return float(len(agg.distinct or ()))
    if aggregate == "dead_letter_rate":
        # n: logs read; total: those dead-lettered.
        return 100.0 * agg.total / agg.n if agg.n else None
    if not agg.values:
        return None
    if aggregate == "sum":
        return agg.total
    if aggregate == "avg":
        return agg.total / agg.values
    if aggregate == "min":
        return agg.lo
    if aggregate == "max":
        return agg.hi
    return quantile(agg.hist or {}, percentile / 100)


def quantile(hist: dict[int, int], q: float) -> float | None:
    """The q-quantile (nearest rank) of a histogram; within RELATIVE_ACCURACY of the true value."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(math.ceil(q * total), 1)
    seen = 0
    for k in sorted(hist, key=bucket_value):
        seen += hist[k]
        if seen >= rank:
            return bucket_value(k)
    return None
