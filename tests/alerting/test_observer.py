"""The alert observer's partials against a plain per-record computation of the same rules (fast tier).

Pages are real SDK log groups through the real projection, in both of its paths (columns, and one log at a time
for groups with a poison record), with missing fields, values of several types and pages spanning panes.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any

import orjson
import pytest
from aliyun.log.proto import LogGroup

from alerting.aggregates import bucket
from alerting.observer import AlertObserver
from alerting.page_partials import SAMPLES_PER_PAGE
from alerting.partials import decode
from alerting.rules import parse_rules
from common.cursors import cursor_from_position
from processor.config import ProjectionConfig, parse_fields
from processor.dead_letter import Provenance
from processor.delivery.observers import ProjectedGroup, ProjectedPage
from processor.projection import Projector

RULES = parse_rules("""rules:
  - {name: speeding, type: record, when: speed > 120, key: carID, value: speed}
  - {name: north-cars, type: record, when: 'zone == "north"', key: carID}
  - {name: burst, type: window, aggregate: count, filter: speed > 120, window: 5m, hop: 1m, threshold: "> 50"}
  - {name: p95, type: window, aggregate: p95, field: speed, group_by: zone, window: 5m, threshold: "> 130"}
  - {name: per-car, type: window, aggregate: avg, field: speed, group_by: carID, window: 2m, threshold: "< 5"}
  - {name: cars, type: window, aggregate: distinct, field: carID, window: 10m, threshold: "> 2000"}
  - name: south-sum
    type: window
    aggregate: sum
    field: speed
    filter: zone in ["south", "east"] and not speed < 10 or speed == "stopped"
    window: 1m
    threshold: "> 5"
  - {name: silent-car, type: absence, key: carID, after: 5m}
  - {name: silent, type: absence, filter: speed > 170, after: 5m}
  - {name: dead-letters, type: window, aggregate: dead_letter_rate, window: 1m, threshold: "> 1"}
""")
T0 = 1_800_000_000 - 1_800_000_000 % 60
WHERE = Provenance("proj", "driving", 0, cursor_from_position(0), 0)


def vehicle(rng: random.Random) -> dict[str, Any]:
    record: dict[str, Any] = {"carID": rng.choice([rng.randint(1, 40), rng.randint(1, 5000), "7", 7.0, True, [7]])}
    speed = rng.choice([rng.randint(0, 180), rng.randint(0, 180), rng.uniform(0, 180), "stopped", None, False,
                        {"kmh": 1}])
    if speed is not None:
        record["speed"] = speed
    if rng.random() < 0.9:
        record["zone"] = rng.choice(["north", "south", "east"])
    return record


def log_group(rng: random.Random, records: list[dict[str, Any]], poison: bool) -> LogGroup:
    """One group of the records (as JSON documents), its logs a few seconds apart, starting in a random minute."""
    group = LogGroup()
    t = T0 + 60 * rng.randint(0, 12) + rng.randint(0, 59)
    for i, record in enumerate(records):
        log = group.Logs.add(Time=t + i // 50)
        log.Contents.add(Key="content", Value="{not json" if poison and i == 3 else orjson.dumps(record).decode())
    return group


def page(rng: random.Random, projector: Projector, groups: int) -> tuple[ProjectedPage, list[tuple[int, dict]]]:
    """A page of `groups` groups, and each good record with its event time, as the rules should see it."""
    projected, seen = [], []
    for g in range(groups):
        group = log_group(rng, [vehicle(rng) for _ in range(rng.randint(1, 400))], poison=g % 3 == 2)
        (good, bad), columns = projector.project_with_columns(group)
        projected.append(ProjectedGroup(WHERE, good, group, bad, columns))
        rejected = {r.index for r in bad}
        seen += [(log.Time, orjson.loads(value)) for log, (_, value) in
                 zip((log for i, log in enumerate(group.Logs) if i not in rejected), good, strict=True)]
    return ProjectedPage(0, cursor_from_position(10), cursor_from_position(10 + groups), projected), seen


def expected(rule: Any, records: list[tuple[int, dict]]) -> dict[int, dict[str, dict[str, Any]]]:
    """The rule's aggregates per pane and group, record by record."""
    panes: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for t, record in records:
        if rule.condition and not rule.condition.test(record):
            continue
        group = "" if rule.key is None else record.get(rule.key)
        if group is None or type(group) in (list, dict):  # no group to count it in
            continue
        agg = panes[t - t % rule.hop_seconds].setdefault(str(group), {"n": 0, "values": []})
        agg["n"] += 1
        value = t if rule.kind == "absence" else record.get(rule.value_field) if rule.value_field else None
        if (rule.aggregate == "distinct" and value is not None and type(value) not in (list, dict)) \
                or type(value) in (int, float):
            agg["values"].append(value)
    return panes


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fields", ["speed:any?,carID:any,zone:any?", "speed:number?,carID:int,zone:str?"])
def test_partials_equal_a_record_by_record_computation(fields, seed):
    """Fields of any type hold every kind of value; typed ones what their coercion gives (the rest dead-lettered)."""
    rng = random.Random(seed)
    projected_fields = parse_fields(fields)
    projector = Projector(ProjectionConfig(projected_fields, "json", "content", "carID"))
    observer = AlertObserver(RULES, "partials", projected_fields)
    emitted: list[tuple[str, bytes | None, bytes]] = []
    projected, records = page(rng, projector, rng.randint(1, 12))
    observer.on_batch(projected, lambda topic, key, value: emitted.append((topic, key, value)))
    [(topic, key, value)] = emitted
    partial = decode(key, value)
    assert topic == "partials"
    assert (partial.begin, partial.end) == (10, 10 + len(projected.groups))
    for rule in RULES.rules:
        if rule.aggregate == "dead_letter_rate":
            continue
        got = partial.rules[rule.name].panes
        want = expected(rule, records)
        assert sorted(got) == sorted(want), rule.name
        for pane, groups in want.items():
            assert sorted(got[pane]) == sorted(groups), (rule.name, pane)
            for group, w in groups.items():
                agg, values = got[pane][group], w["values"]
                assert agg.n == w["n"], (rule.name, pane, group)
                if rule.aggregate == "distinct":
                    assert agg.distinct == (set(values) or None)
                    continue
                assert agg.values == len(values)
                assert agg.hi == (max(values) if values else -math.inf)
                if rule.kind == "window" and values:
                    assert agg.lo == min(values)
                    assert agg.total == pytest.approx(sum(values))
                if rule.aggregate == "percentile":
                    hist: dict[int, int] = defaultdict(int)
                    for v in values:
                        hist[bucket(v)] += 1
                    assert agg.hist == (dict(hist) or None)
        samples = partial.rules[rule.name].samples
        assert len(samples) == min(SAMPLES_PER_PAGE, sum(len(g) for g in want.values()))
        for pane, group, sample in samples:
            assert group in want[pane]
            assert pane <= sample["time"] < pane + rule.hop_seconds
            assert sample["cursor"] == projected.cursor
    rejected = sum(len(g.rejected) for g in projected.groups)
    dead = partial.rules["dead-letters"].panes
    assert sum(a.total for groups in dead.values() for a in groups.values()) == rejected
    assert sum(a.n for groups in dead.values() for a in groups.values()) == len(records) + rejected


def test_the_column_path_and_the_record_path_give_the_same_partials():
    """A group projected a column at a time and the same group projected one log at a time."""
    rng = random.Random(3)
    projected_fields = parse_fields("speed:number,carID:int,zone:str?")
    projector = Projector(ProjectionConfig(projected_fields, "json", "content", "carID"))
    records = [{"speed": rng.randint(0, 180), "carID": rng.randint(1, 30), **({"zone": "north"} if i % 3 else {})}
               for i in range(300)]
    group = log_group(rng, records, poison=False)
    (good, bad), columns = projector.project_with_columns(group)
    assert columns is not None
    assert not bad
    docs: list[dict[str, Any]] = []

    def emit(_topic: str, _key: bytes | None, value: bytes) -> None:
        docs.append(orjson.loads(value))
        del docs[-1]["emitted_ms"]

    for cols in (columns, None):
        page = ProjectedPage(0, cursor_from_position(0), cursor_from_position(1),
                             [ProjectedGroup(WHERE, good, group, bad, cols)])
        AlertObserver(RULES, "partials", projected_fields).on_batch(page, emit)
    assert docs[0] == docs[1]
