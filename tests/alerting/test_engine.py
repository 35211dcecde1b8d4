"""The per-rule state machine over merged partials: for, keep_firing, repeat, send_resolved, silence (pure logic)."""

from alerting.engine import RuleEngine
from alerting.partials import PartialIndex
from alerting.rules import parse_rules
from alerting.state import FIRING, RuleState
from tests.alerting.test_partials import partial

T0 = 1_800_000_000 - 1_800_000_000 % 60


def rule(extra=""):
    text = f"""rules:
- name: r
  type: window
  aggregate: count
  window: 1m
  threshold: "> 5"
{extra}"""
    return parse_rules(text).rules[0]


def run(r, per_minute, grace=0, state=None):
    """Evaluate minute after minute; `per_minute` is the count of each minute. Returns (transitions, state)."""
    index = PartialIndex()
    for i, n in enumerate(per_minute):
        index.add(partial(0, i * 10, i * 10 + 10, i, {T0 + 60 * i: n}))
    engine, state = RuleEngine(r, grace, 3600), state or RuleState()
    engine.evaluate(state, index, T0)
    seen = []
    for i in range(len(per_minute)):
        out = engine.evaluate(state, index, T0 + 60 * (i + 1) + grace)
        seen += [(n.transition.value, n.window_start - T0, n.value) for n in out.notifications]
    return seen, state


def test_fires_once_and_resolves():
    seen, _ = run(rule(), [1, 9, 9, 9, 1])
    assert seen == [("firing", 60, 9.0), ("resolved", 240, 1.0)]


def test_for_waits_for_consecutive_breaches_and_a_single_one_stays_pending():
    seen, _ = run(rule("  for: 3\n"), [9, 1, 9, 9, 9, 1])
    assert seen == [("firing", 240, 9.0), ("resolved", 300, 1.0)]


def test_keep_firing_rides_out_a_dip():
    seen, _ = run(rule("  keep_firing: 1\n"), [9, 1, 9, 1, 1])
    assert seen == [("firing", 0, 9.0), ("resolved", 240, 1.0)]


def test_repeat_while_firing_and_no_resolved_when_not_wanted():
    seen, _ = run(rule("  repeat: 2m\n  send_resolved: false\n"), [9, 9, 9, 9, 1])
    assert seen == [("firing", 0, 9.0), ("repeat", 120, 9.0)]


def test_a_silenced_rule_changes_state_but_sends_nothing():
    seen, state = run(rule("  silence_until: 2099-01-01T00:00:00Z\n"), [9, 9])
    assert seen == []
    assert state.groups[""].status == FIRING


def test_state_survives_a_restart_as_json_firing_stays_firing():
    _, state = run(rule(), [9, 9])
    restored = RuleState.from_json(state.to_json())
    assert restored.groups[""].status == FIRING
    assert restored.closed_until == state.closed_until


def test_a_resolution_and_a_repeat_name_the_firing_they_follow():
    r = rule("  repeat: 1m\n")
    index = PartialIndex()
    for i, n in enumerate([9, 9, 1]):
        index.add(partial(0, i * 10, i * 10 + 10, i, {T0 + 60 * i: n}))
    engine, state = RuleEngine(r, 0, 3600), RuleState()
    engine.evaluate(state, index, T0)
    sent = [n for i in range(3) for n in engine.evaluate(state, index, T0 + 60 * (i + 1)).notifications]
    firing, repeat, resolved = sent
    assert (firing.firing_id, repeat.firing_id, resolved.firing_id) == (None, firing.id, firing.id)
    assert len({firing.id, repeat.id, resolved.id}) == 3
