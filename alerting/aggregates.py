"""Mergeable partial aggregates: what one page contributes to one (rule, pane, group), and their merge.

Count, sum, min and max merge exactly. Distinct keeps the set of values (exact; a pane's set of car ids is a
few KB). Percentiles use a log-bucket histogram (DDSketch's idea): a value's bucket is ceil(log_gamma(v)), so
any quantile is within 1% of a true value of the data, and merging is adding bucket counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
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

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"n": self.n}
        if self.values:
            doc.update(v=self.values, s=self.total, lo=self.lo, hi=self.hi)
        if self.hist:
            doc["h"] = [[k, c] for k, c in self.hist.items()]
        if self.distinct:
            doc["d"] = sorted(self.distinct, key=str)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Agg:
        agg = cls()
        agg.n = int(doc["n"])
        if doc.get("v"):
            agg.values, agg.total, agg.lo, agg.hi = int(doc["v"]), float(doc["s"]), float(doc["lo"]), float(doc["hi"])
        if doc.get("h"):
            agg.hist = {int(k): int(c) for k, c in doc["h"]}
        if doc.get("d"):
            agg.distinct = set(doc["d"])
        return agg


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
