"""One rule's partial aggregates over one page, computed a column at a time: the function's per-record path.

A page's good records arrive as columns (the projection built them; see `PageColumns.of`). A rule selects its
records with its condition's mask, splits them by pane, and aggregates per group with C-level tools
(`itertools.compress`, `collections.Counter`, `sorted`, `dict`): the Python-level work is per distinct group or
value, not per record. Record and absence rules are keyed by values that rarely repeat within a page (car ids),
so they compute only what the evaluator reads of them (records, records with a value, highest value) and never
build an `Agg` per key. Each pane is written as columns (`aggregates.to_columns`), decoded by `alerting.partials`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, count, islice, repeat
from operator import and_, itemgetter
from typing import Any

import orjson

from alerting.aggregates import Agg, bucket, to_columns
from alerting.rules import Rule
from processor.delivery.observers import ProjectedPage

# Samples per rule and page: enough for a notification to show a few records and where to find them.
SAMPLES_PER_PAGE = 20
_NUMBERS = frozenset((int, float))  # bool is not a number here
_UNHASHABLE = (list, dict)
_UNGROUPABLE = frozenset((type(None), list, dict))
_VALUE = itemgetter(1)


@dataclass(frozen=True, slots=True)
class PageColumns:
    """A page's good records as columns: event times, each field the rules read (None where a record lacks it),
    and the records as produced (for samples), all in log order."""

    cursor: str
    times: list[int]
    fields: dict[str, list[Any]]
    records: list[tuple[bytes | None, bytes]]

    @classmethod
    def of(cls, page: ProjectedPage, names: Iterable[str]) -> PageColumns:
        fields: dict[str, list[Any]] = {name: [] for name in names}
        times: list[int] = []
        records: list[tuple[bytes | None, bytes]] = []
        for group in page.groups:
            if not group.records:
                continue
            n = len(group.records)
            columns = group.columns
            if columns is None:  # projected one log at a time: parse what was produced
                docs = list(map(orjson.loads, map(_VALUE, group.records)))
                for name, column in fields.items():
                    column.extend([doc.get(name) for doc in docs])
            else:
                for name, column in fields.items():
                    column.extend(columns.fields.get(name) or repeat(None, n))
            times += group.event_times()
            records += group.records
        return cls(page.cursor, times, fields, records)


def rule_partial(rule: Rule, page: PageColumns, mask: Sequence[bool] | None) -> dict[str, Any]:
    """The rule's partial for the page: {"panes": {pane start: columns}, "samples": [[pane, group, sample]]}.

    A sample (the record, its cursor and time) is kept for the first record of each (pane, group), in pane
    order, up to SAMPLES_PER_PAGE.
    """
    selected, keys = mask, page.fields[rule.key] if rule.key else None
    if keys is not None:
        kinds = set(map(type, keys))
        if kinds & _UNGROUPABLE:
            keep = [k is not None and type(k) not in _UNHASHABLE for k in keys]
            selected = keep if selected is None else list(map(and_, selected, keep))
        if kinds - _UNGROUPABLE - {int} and kinds - _UNGROUPABLE - {str}:
            # A group is its key as text, and values equal as Python keys may differ as text (1, 1.0, True).
            keys = [k if type(k) in _UNHASHABLE else str(k) for k in keys]
    values = _values_of(rule, page)
    columns = [page.times, keys, values]
    if selected is not None:
        columns = [None if c is None else list(compress(c, selected)) for c in columns]
    runs, order, (times, keys, values) = _by_pane(rule.hop_seconds, columns)
    if rule.kind == "absence":
        values = times  # when each key was last seen
    panes: dict[str, Any] = {}
    samples: list[list[Any]] = []
    for pane, lo, hi in runs:
        part_keys = None if keys is None else keys[lo:hi]
        part_values = None if values is None else values[lo:hi]
        if part_keys is None or part_keys.count(part_keys[0]) == hi - lo:
            counts = Counter({"" if part_keys is None else part_keys[0]: hi - lo})
            part_keys = None  # one group: no per-record keys needed
        else:
            counts = Counter(part_keys)
        if rule.kind in ("record", "absence"):
            panes[str(pane)] = _keyed(part_keys, part_values, counts)
        else:
            panes[str(pane)] = to_columns(_windowed(rule, part_keys, part_values, counts))
        for group in _first(counts, SAMPLES_PER_PAGE - len(samples)):
            i = lo + (0 if part_keys is None else part_keys.index(group))
            record = page.records[_origin(selected, order, i)][1].decode()
            samples.append([pane, str(group), {"record": record, "cursor": page.cursor, "time": times[i]}])
    return {"panes": panes, "samples": samples}


def _values_of(rule: Rule, page: PageColumns) -> list[Any] | None:
    if rule.value_field is None or rule.kind == "absence" or (rule.kind == "window" and rule.aggregate == "count"):
        return None
    return page.fields[rule.value_field]


def _by_pane(hop: int, columns: list[Any]) -> tuple[list[tuple[int, int, int]], list[int] | None, list[Any]]:
    """(pane start, first, end) of each pane's stretch, the order the columns were put in (None: as they were),
    and the columns (times first), ordered by pane when the page spans several (stably: log order in a pane)."""
    times = columns[0]
    if not times:
        return [], None, columns
    first, last = min(times), max(times)
    if first - first % hop == last - last % hop:
        return [(first - first % hop, 0, len(times))], None, columns
    pane_of = {t: t - t % hop for t in set(times)}
    starts = list(map(pane_of.__getitem__, times))
    order = sorted(range(len(starts)), key=starts.__getitem__)
    columns = [None if c is None else list(map(c.__getitem__, order)) for c in columns]
    starts = list(map(starts.__getitem__, order))
    return [(p, bisect_left(starts, p), bisect_right(starts, p)) for p in sorted(set(starts))], order, columns


def _origin(selected: Sequence[bool] | None, order: list[int] | None, i: int) -> int:
    """Where the rule's i-th record (after selection and ordering by pane) is in the page."""
    j = i if order is None else order[i]
    return j if selected is None else next(islice(compress(count(), selected), j, None))


def _first(counts: Counter[Any], limit: int) -> list[Any]:
    """The first `limit` groups in order of appearance (a Counter keeps it)."""
    return list(islice(counts, max(limit, 0)))


def _numbers(values: list[Any]) -> list[Any]:
    if set(map(type, values)) <= _NUMBERS:
        return values
    return [v for v in values if type(v) in _NUMBERS]


def _numeric(keys: list[Any], values: list[Any]) -> tuple[list[Any], list[Any]]:
    """The (key, value) pairs whose value is a number, as two columns."""
    if set(map(type, values)) <= _NUMBERS:
        return keys, values
    keep = [type(v) in _NUMBERS for v in values]
    return list(compress(keys, keep)), list(compress(values, keep))


def _keyed(keys: list[Any] | None, values: list[Any] | None, counts: Counter[Any]) -> dict[str, list[Any]]:
    """A record or absence rule's pane: per key the records, and (with a value) the records with a numeric value
    and the highest; what `record_digest` and `absence` read. `keys` None: one group, `counts`' only one."""
    groups = list(counts)
    doc: dict[str, list[Any]] = {"g": groups, "n": list(counts.values())}
    if values is None:
        return doc
    if keys is None:
        numbers = _numbers(values)
        doc["v"], doc["hi"] = [len(numbers)], [max(numbers) if numbers else None]
        return doc
    numeric_keys, numbers = _numeric(keys, values)
    have = counts if numeric_keys is keys else Counter(numeric_keys)
    # Ascending by value, so a key's last entry in the dict, the one kept, is its highest value.
    order = sorted(range(len(numbers)), key=numbers.__getitem__)
    highest = dict(zip(map(numeric_keys.__getitem__, order), map(numbers.__getitem__, order), strict=True))
    doc["v"] = list(map(have.__getitem__, groups))
    doc["hi"] = list(map(highest.get, groups))
    return doc


def _windowed(rule: Rule, keys: list[Any] | None, values: list[Any] | None, counts: Counter[Any]) -> dict[Any, Agg]:
    """A window rule's pane: an `Agg` per group, fed once per distinct (group, value) with how often it occurs.
    `keys` None: one group, `counts`' only one."""
    aggs: dict[Any, Agg] = {}
    for group, n in counts.items():
        agg = aggs[group] = Agg()
        agg.n = n
    if values is None:
        return aggs
    only = next(iter(counts))
    if rule.aggregate == "distinct":
        pairs = zip(repeat(only), set(values)) if keys is None else set(zip(keys, values, strict=True))
        for group, value in pairs:
            if value is not None and type(value) not in _UNHASHABLE:
                aggs[group].add_distinct(value)
        return aggs
    histogram = rule.aggregate == "percentile"
    if keys is None:
        tally = ((only, value, n) for value, n in Counter(_numbers(values)).items())
    else:
        tally = ((group, value, n) for (group, value), n in Counter(zip(*_numeric(keys, values), strict=True)).items())
    for group, value, n in tally:
        agg = aggs[group]
        agg.values += n
        agg.total += value * n
        agg.lo = min(agg.lo, value)
        agg.hi = max(agg.hi, value)
        if histogram:
            hist = agg.hist = agg.hist or {}
            b = bucket(value)
            hist[b] = hist.get(b, 0) + n
    return aggs
