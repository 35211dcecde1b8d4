"""The rules file: a complete file loads, each kind of mistake is refused naming rule, key and line."""

from pathlib import Path

import pytest

from alerting.rules import RulesError, load_rules, parse_rules

VEHICLE_RULES = Path(__file__).resolve().parents[2] / "alerting" / "rules" / "vehicles.yaml"
README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_vehicle_rules_load_with_their_settings():
    rules = load_rules(VEHICLE_RULES)
    by_name = {r.name: r for r in rules.rules}
    assert (rules.grace_seconds, rules.late_horizon_seconds) == (120, 3600)
    speeding = by_name["speeding"]
    assert (speeding.kind, speeding.key, speeding.value_field, speeding.repeat_seconds) == ("record", "carID", "speed",
                                                                                          1800)
    assert speeding.condition.test({"speed": 121})
    assert not speeding.condition.test({"speed": 120})
    burst = by_name["speeding-burst"]
    assert (burst.window_seconds, burst.hop_seconds, burst.comparison, burst.threshold) == (300, 60, ">", 50.0)
    assert (burst.for_windows, burst.keep_firing, burst.send_resolved) == (2, 1, True)
    assert (by_name["zone-speed-p95"].aggregate, by_name["zone-speed-p95"].percentile) == ("percentile", 95.0)
    assert by_name["busy-hour"].send_resolved is False
    assert by_name["car-silent"].labels == {"team": "fleet"}
    assert (speeding.channels, by_name["car-silent"].channels) == (("ops-mail",), ())
    assert rules.channels["ops-mail"]["type"] == "email"
    lag = by_name["pipeline-lag"]
    assert (lag.kind, lag.comparison, lag.threshold, lag.hop_seconds, lag.fields) == ("lag", ">", 300.0, 60, set())
    assert by_name["logstore-silent"].silence_until == 1767225600
    assert by_name["logstore-silent"].key is None
    assert by_name["traffic-jam"].fields == {"speed", "zone"}


def test_conditions_compare_missing_and_mistyped_fields_as_no_match():
    rules = parse_rules('rules:\n- {name: r, type: record, key: carID, when: "speed > 120 and zone in [\'a\', \'b\']"}')
    test = rules.rules[0].condition.test
    assert test({"speed": 130, "zone": "a"})
    assert not test({"speed": 130, "zone": "c"})
    assert not test({"zone": "a"})
    assert not test({"speed": "fast", "zone": "a"})


SPEEDS = [130, 120, None, "fast", 99.5, True, [1], 150, 0]  # None: the record lacks the field
ZONES = ["a", None, "c", "b", "a", "ab", "a", 3, "b"]
KNOWN = {  # worked out by hand: a missing field or values that do not compare are no match
    "speed > 120": [True, False, False, False, False, False, False, True, False],
    "speed != 120": [True, False, False, True, True, True, True, True, True],
    "zone not in ['a', 'b']": [False, False, True, False, False, True, False, True, False],
}


@pytest.mark.parametrize("text", [
    *KNOWN, "speed == None", "not speed >= 100 or zone == 'a'", "0 < speed <= 150", "speed > zone", "1 < 2",
    "'a' in zone",
])
def test_a_condition_over_columns_matches_each_record_tested_alone(text):
    """The page-wide mask (C-level where it can be) against the same condition on each record by itself."""
    condition = parse_rules(f'rules:\n- {{name: r, type: record, key: carID, when: "{text}"}}').rules[0].condition
    records = [{k: v for k, v in (("speed", s), ("zone", z)) if v is not None}
               for s, z in zip(SPEEDS, ZONES, strict=True)]
    mask = condition.mask({"speed": SPEEDS, "zone": ZONES}, len(SPEEDS))
    assert mask == [condition.test(r) for r in records]
    assert mask == KNOWN.get(text, mask)


@pytest.mark.parametrize(("text", "message"), [
    ("rules:\n- name: r\n  type: window\n  aggregate: count\n  window: 5m\n  threshold: '> 1'\n  colour: red\n",
     "<rules>:7: rule 'r' (type window): unknown key 'colour'"),
    ("rules:\n- name: r\n  type: window\n  aggregate: count\n  window: 5m\n  hop: 2m\n  threshold: '> 1'\n",
     "<rules>:6: rule 'r': key 'hop': the hop (120 s) must divide the window (300 s)"),
    ("rules:\n- name: r\n  type: window\n  aggregate: count\n  window: five\n  threshold: '> 1'\n",
     "<rules>:5: rule 'r': key 'window': expected a duration like 30s, 5m, 1h or 1d"),
    ("rules:\n- name: r\n  type: record\n  key: carID\n  when: speed >> 120\n",
     "<rules>:5: rule 'r': key 'when': expected a comparison such as 'speed > 120', got 'speed >> 120'"),
    ("rules:\n- name: r\n  type: record\n  key: carID\n  when: __import__('os')\n",
     "<rules>:5: rule 'r': key 'when': expected a comparison such as 'speed > 120'"),
    ("rules:\n- name: r\n  type: record\n  key: carID\n  when: speed >\n",
     "<rules>:5: rule 'r': key 'when': cannot parse 'speed >'"),
    ("rules:\n- name: r\n  type: window\n  aggregate: median\n  window: 5m\n  threshold: '> 1'\n",
     "<rules>:4: rule 'r': key 'aggregate': 'median' is not one of"),
    ("rules:\n- name: r\n  type: window\n  aggregate: avg\n  window: 5m\n  threshold: '> 1'\n",
     "<rules>:2: rule 'r': key 'field': avg needs the field it aggregates"),
    ("rules:\n- name: r\n  type: window\n  aggregate: count\n  window: 5m\n  threshold: 50\n",
     "<rules>:6: rule 'r': key 'threshold': expected a comparison and a number"),
    ("rules:\n- name: r\n  type: absence\n  after: 5m\n  silence_until: 2026-01-01T00:00:00\n",
     "<rules>:5: rule 'r': key 'silence_until': give a time zone"),
    ("rules:\n- name: r\n  type: absence\n  after: 5m\n- name: r\n  type: absence\n  after: 5m\n",
     "<rules>:5: rule 'r': key 'name': the name is used twice"),
    ("rules:\n- name: r\n  type: flatline\n", "<rules>:3: rule 'r': key 'type': 'flatline' is not one of"),
    ("rules: [\n", "<rules>:2: not valid YAML"),
    ("rules:\n- name: r\n  type: absence\n  after: 5m\n  channels: [ops-mail]\n",
     "<rules>:5: rule 'r': key 'channels': 'ops-mail' is not in the file's channels: section (none are declared)"),
    ("rules:\n- name: r\n  type: window\n  aggregate: dead_letter_rate\n  group_by: zone\n  window: 1m\n"
     "  threshold: '> 1'\n", "<rules>:5: rule 'r': key 'group_by': a dead-lettered log has no projected fields"),
    ("evaluator: {grace: -1}\nrules:\n- {name: r, type: absence, after: 5m}\n",
     "<rules>:1: evaluator: key 'grace': expected a duration"),
])
def test_each_mistake_is_refused_naming_rule_key_and_line(text, message):
    with pytest.raises(RulesError) as caught:
        parse_rules(text)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_rule_reading_a_field_the_function_does_not_project_is_refused():
    rules = load_rules(VEHICLE_RULES)
    with pytest.raises(RulesError, match=r"rule 'traffic-jam' reads field\(s\) zone, which PROJECTION_FIELDS does not"):
        rules.check_fields({"speed", "carID"})
    rules.check_fields({"speed", "carID", "zone"})


def test_the_readme_shows_the_shipped_vehicle_rules():
    block = README.read_text().split("## Alerts", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert block == VEHICLE_RULES.read_text()
