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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress, count, islice, repeat
from operator import and_, gt, itemgetter
from typing import Any

import orjson

from alerting.aggregates import Agg, bucket, to_columns
from alerting.rules import Rule
from processor.config import FieldSpec
from processor.delivery.observers import ProjectedPage

# Samples per rule and page: enough for a notification to show a few records and where to find them.
SAMPLES_PER_PAGE = 20
_NUMBERS = frozenset((int, float))  # bool is not a number here
_NUMBERS_OR_NONE = _NUMBERS | {type(None)}
_UNHASHABLE = (list, dict)
_UNGROUPABLE = frozenset((type(None), list, dict))
_PROJECTED_TYPES = {"int": frozenset((int,)), "float": frozenset((float,)), "number": _NUMBERS,
                    "str": frozenset((str,)), "bool": frozenset((bool,))}
_VALUE = itemgetter(1)
# Values repeat page after page (speeds): each one's bucket is computed once, for as many as this holds.
_bucket = lru_cache(maxsize=1 << 16)(bucket)


@dataclass(frozen=True, slots=True)
class PageColumns:
    """A page's good records as columns: event times, each field the rules read (None where a record lacks it),
    and the records as produced (for samples), all in log order; `kinds` the types each field's values may have,
    and `span` the earliest and latest event time."""

    cursor: str
    times: list[int]
    fields: dict[str, list[Any]]
    kinds: dict[str, frozenset[type]]
    records: list[tuple[bytes | None, bytes]]
    span: tuple[int, int]

    @classmethod
    def of(cls, page: ProjectedPage, specs: Mapping[str, FieldSpec]) -> PageColumns:
        fields: dict[str, list[Any]] = {name: [] for name in specs}
        times: list[int] = []
        records: list[tuple[bytes | None, bytes]] = []
        ends: list[int] = []
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
            group_times = group.event_times()
            # A group's logs often share one time; comparing is cheaper than min() and max().
            ends += group_times[:1] if group_times.count(group_times[0]) == n else (min(group_times), max(group_times))
            times += group_times
            records += group.records
        kinds = {name: _declared(spec) or frozenset(map(type, fields[name])) for name, spec in specs.items()}
        return cls(page.cursor, times, fields, kinds, records, (min(ends), max(ends)) if ends else (0, 0))


def _declared(spec: FieldSpec) -> frozenset[type] | None:
    """The types the projection gives a field's values (it coerces them), None for `any`."""
    kinds = _PROJECTED_TYPES.get(spec.type)
    return None if kinds is None else kinds if spec.required else kinds | {type(None)}


def rule_partial(rule: Rule, page: PageColumns, mask: Sequence[bool] | None) -> dict[str, Any]:
    """The rule's partial for the page: {"panes": {pane start: columns}, "samples": [[pane, group, sample]]}.

    A sample (the record, its cursor and time) is kept for the first record of each (pane, group), in pane
    order, up to SAMPLES_PER_PAGE.
    """
    selected, keys = mask, page.fields[rule.key] if rule.key else None
    if keys is not None:
        kinds = page.kinds[rule.key]  # type: ignore[index]
        if kinds & {list, dict} or (type(None) in kinds and None in keys):
            keep = [k is not None and type(k) not in _UNHASHABLE for k in keys]
            selected = keep if selected is None else list(map(and_, selected, keep))
        if len(kinds - _UNGROUPABLE) > 1 or kinds & {float}:
            # A group is its key as text, and values equal as Python keys may differ as text (1, 1.0, True;
            # 0.0 and -0.0).
            keys = [k if type(k) in _UNHASHABLE else str(k) for k in keys]
    values, value_kinds = _values_of(rule, page)
    hop, (first, last) = rule.hop_seconds, page.span
    one_pane = first - first % hop == last - last % hop
    # In one pane, times are read only for samples (and absence), from the page's own column.
    columns = [None if one_pane and rule.kind != "absence" else page.times, keys, values]
    if selected is not None:
        columns = [None if c is None else list(compress(c, selected)) for c in columns]
    if one_pane:
        m = len(page.times) if selected is None else selected.count(True)
        runs, order = [(first - first % hop, 0, m)] if m else [], None
        times, keys, values = columns
    else:
        runs, order, (times, keys, values) = _by_pane(hop, columns)
    if rule.kind == "absence":
        values, value_kinds = times, frozenset((int,))  # when each key was last seen
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
            panes[str(pane)] = _keyed(part_keys, part_values, value_kinds, counts)
        else:
            panes[str(pane)] = to_columns(_windowed(rule, part_keys, part_values, value_kinds, counts))
        for group in _first(counts, SAMPLES_PER_PAGE - len(samples)):
            origin = _origin(selected, order, lo + (0 if part_keys is None else part_keys.index(group)))
            sample = {"record": page.records[origin][1].decode(), "cursor": page.cursor, "time": page.times[origin]}
            samples.append([pane, str(group), sample])
    return {"panes": panes, "samples": samples}


def _values_of(rule: Rule, page: PageColumns) -> tuple[list[Any] | None, frozenset[type]]:
    if rule.value_field is None or rule.kind == "absence" or (rule.kind == "window" and rule.aggregate == "count"):
        return None, frozenset()
    return page.fields[rule.value_field], page.kinds[rule.value_field]


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


def _all_numbers(values: list[Any], kinds: frozenset[type]) -> bool:
    return kinds <= _NUMBERS or (kinds <= _NUMBERS_OR_NONE and None not in values)


def _numbers(values: list[Any], kinds: frozenset[type]) -> list[Any]:
    if _all_numbers(values, kinds):
        return values
    return [v for v in values if type(v) in _NUMBERS]


def _numeric(keys: list[Any], values: list[Any], kinds: frozenset[type]) -> tuple[list[Any], list[Any]]:
    """The (key, value) pairs whose value is a number, as two columns."""
    if _all_numbers(values, kinds):
        return keys, values
    keep = [type(v) in _NUMBERS for v in values]
    return list(compress(keys, keep)), list(compress(values, keep))


def _keyed(keys: list[Any] | None, values: list[Any] | None, kinds: frozenset[type],
           counts: Counter[Any]) -> dict[str, list[Any]]:
    """A record or absence rule's pane: per key the records, and (with a value) the records with a numeric value
    and the highest; what `record_digest` and `absence` read. `keys` None: one group, `counts`' only one."""
    groups = list(counts)
    doc: dict[str, list[Any]] = {"g": groups, "n": list(counts.values())}
    if values is None:
        return doc
    if keys is None:
        numbers = _numbers(values, kinds)
        doc["v"], doc["hi"] = [len(numbers)], [max(numbers) if numbers else None]
        return doc
    numeric_keys, numbers = _numeric(keys, values, kinds)
    have = counts if numeric_keys is keys else Counter(numeric_keys)
    doc["v"] = doc["n"] if have is counts else list(map(have.__getitem__, groups))
    doc["hi"] = list(map(_highest(numeric_keys, numbers, have).get, groups))
    return doc


def _highest(keys: list[Any], values: list[Any], counts: Counter[Any]) -> dict[Any, Any]:
    """Each key's highest value. Keys mostly occur once a page (car ids): the pairs as they are, then the keys
    that repeat again with their values in ascending order, so that the last, the highest, is kept."""
    highest = dict(zip(keys, values, strict=True))
    if len(counts) < len(keys):
        repeated = set(compress(counts, map(gt, counts.values(), repeat(1))))
        pick = list(map(repeated.__contains__, keys))
        keys, values = list(compress(keys, pick)), list(compress(values, pick))
        order = sorted(range(len(values)), key=values.__getitem__)
        highest.update(zip(map(keys.__getitem__, order), map(values.__getitem__, order), strict=True))
    return highest


def _windowed(rule: Rule, keys: list[Any] | None, values: list[Any] | None, kinds: frozenset[type],
              counts: Counter[Any]) -> dict[Any, Agg]:
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
        if kinds & {list, dict}:
            keep = [type(v) not in _UNHASHABLE for v in values]
            values, keys = list(compress(values, keep)), None if keys is None else list(compress(keys, keep))
        pairs = zip(repeat(only), set(values)) if keys is None else set(zip(keys, values, strict=True))
        for group, value in pairs:
            if value is not None:
                aggs[group].add_distinct(value)
        return aggs
    histogram = rule.aggregate == "percentile"
    if keys is None:
        tally = ((only, value, n) for value, n in Counter(_numbers(values, kinds)).items())
    else:
        pairs = zip(*_numeric(keys, values, kinds), strict=True)
        tally = ((group, value, n) for (group, value), n in Counter(pairs).items())
    for group, value, n in tally:
        agg = aggs[group]
        agg.values += n
        agg.total += value * n
        if value < agg.lo:  # noqa: PLR1730 (cheaper than a call to min() per distinct value)
            agg.lo = value
        if value > agg.hi:  # noqa: PLR1730
            agg.hi = value
        if histogram:
            hist = agg.hist = agg.hist or {}
            b = _bucket(value)
            hist[b] = hist.get(b, 0) + n
    return aggs
