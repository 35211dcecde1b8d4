"""One evaluation of one rule: close the windows whose end plus grace has passed (by wall clock, since an idle
shard sends no watermark), re-check closed windows for late records, and run the alert state machine.

Returns the notifications to send and the history events; it changes only the rule's `RuleState`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerting.aggregates import Agg, merged, value_of
from alerting.notification import GroupValue, Notification, Sample, Transition
from alerting.partials import PartialIndex
from alerting.rules import Rule
from alerting.state import FIRING, INACTIVE, PENDING, RuleState, notification_id

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
HISTORY_WINDOWS = 12  # recent windows a notification carries for its chart


@dataclass
class Outcome:
    notifications: list[Notification] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # for the history topic


class RuleEngine:
    def __init__(self, rule: Rule, grace: int, late_horizon: int) -> None:
        self.rule, self.grace, self.late_horizon = rule, grace, late_horizon

    def evaluate(self, state: RuleState, index: PartialIndex, now: float,
                 measured: Mapping[str, float] | None = None) -> Outcome:
        """`measured`: what lag rules compare, per group (shard)."""
        rule, out = self.rule, Outcome()
        if rule.kind == "lag":
            _lag(_Context(rule, state, index, {}, now, out), measured or {})
            return out
        watermark = int(now) - self.grace
        if not state.closed_until:
            # Windows that closed before the evaluator first ran are not judged: start at the current one.
            state.closed_until = watermark - watermark % rule.hop_seconds
            if rule.kind == "absence" and not rule.key:
                # A logstore that never sent anything is absent `after` the evaluator first looked.
                state.last_seen.setdefault("", state.closed_until)
        panes = index.panes(rule.name)
        ctx = _Context(rule, state, index, panes, now, out)
        ends = range(state.closed_until + rule.hop_seconds, watermark + 1, rule.hop_seconds)
        if rule.kind == "window":
            _recheck_windows(ctx)
            for end in ends:
                _close_window(ctx, end)
        elif rule.kind == "record":
            _record_digest(ctx, list(ends))
        else:
            _absence(ctx, watermark)
        if ends:
            state.closed_until = ends[-1]
        horizon = state.closed_until - self.late_horizon
        state.decided = {end: d for end, d in state.decided.items() if end > horizon}
        return out


@dataclass
class _Context:
    rule: Rule
    state: RuleState
    index: PartialIndex
    panes: dict[int, dict[str, Agg]]
    now: float
    out: Outcome

    def window(self, end: int, group: str) -> Agg:
        r = self.rule
        starts = range(end - r.window_seconds, end, r.hop_seconds)
        return merged(self.panes[s][group] for s in starts if group in self.panes.get(s, {}))

    def groups_in(self, end: int) -> set[str]:
        r = self.rule
        return {g for s in range(end - r.window_seconds, end, r.hop_seconds) for g in self.panes.get(s, {})}

    def notify(self, transition: Transition, group: str, start: int, end: int, value: float | None,
               groups: tuple[GroupValue, ...] = (), extra: str = "", firing_id: str | None = None) -> None:
        r = self.rule
        history = [(e - r.window_seconds, d[group][0]) for e, d in sorted(self.state.decided.items())
                   if group in d and d[group][0] is not None][-HISTORY_WINDOWS:]
        samples = [Sample(s["record"].encode(), stream[0], stream[1], stream[2], s["cursor"], s["time"])
                   for stream, s in self.index.samples(r.name, start, end, group or None)]
        n = Notification(
            id=notification_id(r.name, transition, group, start, extra), rule=r.name, severity=r.severity,
            transition=transition, description=r.description or r.name, value=value,
            threshold=r.threshold if r.kind == "window" else None, comparison=_comparison(r), window_start=start,
            window_end=end,
            groups=groups, history=tuple(history), samples=tuple(samples),
            labels={**r.labels, **_group_label(r, group)},
            firing_id=firing_id)
        silenced = self.now < r.silence_until
        self.out.events.append({"event": "transition", "rule": r.name, "group": group, "id": n.id,
                                "transition": transition.value, "value": value, "window_start": start,
                                "window_end": end, "silenced": silenced})
        if not silenced:
            self.out.notifications.append(n)


def _group_label(rule: Rule, group: str) -> dict[str, str]:
    """Which group a window or lag alert is about (a digest lists its groups instead)."""
    if rule.kind == "lag":
        return {"shard": group}
    return {rule.key: group} if rule.key and group and rule.kind == "window" else {}


def _firing_id(rule: Rule, group: str, since: int) -> str:
    """The id the firing of `group` at window `since` got: repeats and the resolution thread under it."""
    return notification_id(rule.name, Transition.FIRING, group, since)


def _comparison(rule: Rule) -> str:
    """What the value is compared with: the threshold's operator, or what a record or absence rule tests."""
    if rule.kind == "window":
        return rule.comparison
    if rule.kind == "absence":
        return "absent"
    return rule.condition.text if rule.condition else ""


def _breach(rule: Rule, value: float | None) -> bool:
    return value is not None and _COMPARE[rule.comparison](value, rule.threshold)


def _close_window(ctx: _Context, end: int) -> None:
    rule, state = ctx.rule, ctx.state
    start = end - rule.window_seconds
    groups = ctx.groups_in(end) | {g for g, s in state.groups.items() if s.status != INACTIVE}
    if rule.key is None:
        groups.add("")
    decided = state.decided.setdefault(end, {})
    for group in sorted(groups):
        agg = ctx.window(end, group)
        value = value_of(agg, rule.aggregate, rule.percentile)
        breach = _breach(rule, value)
        decided[group] = [value, agg.n, breach]
        _step(ctx, group, start, end, value, breach)
    for group in [g for g, s in state.groups.items() if s.status == INACTIVE]:
        del state.groups[group]


def _step(ctx: _Context, group: str, start: int, end: int, value: float | None, breach: bool) -> None:
    rule, g = ctx.rule, ctx.state.group(group)
    if breach:
        g.breaches, g.clears = g.breaches + 1, 0
        if g.status == FIRING:
            if ctx.now - g.last_sent >= rule.repeat_seconds:
                g.last_sent = ctx.now
                ctx.notify(Transition.REPEAT, group, start, end, value, firing_id=_firing_id(rule, group, g.since))
        elif g.breaches >= rule.for_windows:
            g.status, g.since, g.last_sent = FIRING, start, ctx.now
            ctx.notify(Transition.FIRING, group, start, end, value)
        else:
            g.status = PENDING
        return
    g.breaches = 0
    if g.status == FIRING:
        g.clears += 1
        if g.clears > rule.keep_firing:
            g.status, g.clears = INACTIVE, 0
            if rule.send_resolved:
                ctx.notify(Transition.RESOLVED, group, start, end, value, extra=str(g.since),
                           firing_id=_firing_id(rule, group, g.since))
    else:
        g.status = INACTIVE


def _recheck_windows(ctx: _Context) -> None:
    """Late records: a closed window whose records changed is counted, and corrected if its outcome changed."""
    rule, state = ctx.rule, ctx.state
    for end, decided in sorted(state.decided.items()):
        for group in sorted(ctx.groups_in(end) | set(decided)):
            agg = ctx.window(end, group)
            before = decided.get(group, [None, 0, False])
            if agg.n == before[1]:
                continue
            value = value_of(agg, rule.aggregate, rule.percentile)
            breach = _breach(rule, value)
            late = agg.n - before[1]
            state.late_records += max(late, 0)
            ctx.out.events.append({"event": "late", "rule": rule.name, "group": group, "records": late,
                                   "window_start": end - rule.window_seconds, "window_end": end,
                                   "value_before": before[0], "value": value})
            decided[group] = [value, agg.n, breach]
            if breach != before[2]:
                ctx.notify(Transition.CORRECTION, group, end - rule.window_seconds, end, value,
                           extra=f"{agg.n}")


def _record_digest(ctx: _Context, ends: list[int]) -> None:
    """Keys matching in newly closed panes, and late ones in closed panes, not quiet: one digest notification."""
    rule, state = ctx.rule, ctx.state
    closing = set(ends) | set(state.decided)
    matched: dict[str, tuple[int, float]] = {}
    for end in sorted(closing):
        pane = end - rule.hop_seconds
        decided = state.decided.setdefault(end, {})
        for key, agg in ctx.panes.get(pane, {}).items():
            if decided.get(key, [None, 0])[1] == agg.n:
                continue
            if end not in ends:
                late = agg.n - decided.get(key, [None, 0])[1]
                state.late_records += late
                ctx.out.events.append({"event": "late", "rule": rule.name, "group": key, "records": late,
                                       "window_start": pane, "window_end": end})
            decided[key] = [agg.hi if agg.values else float(agg.n), agg.n, True]
            if state.quiet_until.get(key, 0) <= pane:
                value = agg.hi if agg.values else float(agg.n)
                first, best = matched.get(key, (pane, value))
                matched[key] = (min(first, pane), max(best, value))
    if not matched:
        return
    start = min(p for p, _ in matched.values())
    end = max(p for p, _ in matched.values()) + rule.hop_seconds
    for key, (pane, _) in matched.items():
        state.quiet_until[key] = pane + rule.repeat_seconds
    groups = tuple(GroupValue(k, v) for k, (_, v) in sorted(matched.items(), key=lambda kv: -kv[1][1]))
    ctx.notify(Transition.FIRING, "", start, end, float(len(groups)), groups, extra=",".join(sorted(matched)))


def _lag(ctx: _Context, measured: Mapping[str, float]) -> None:
    """Once per `every` of wall clock: each shard's lag through the state machine, as a window's value would."""
    rule, state = ctx.rule, ctx.state
    tick = int(ctx.now) - int(ctx.now) % rule.hop_seconds
    if tick <= state.closed_until:
        return
    state.closed_until = tick
    active = {g for g, s in state.groups.items() if s.status != INACTIVE}
    for group in sorted(set(measured) | active):
        value = measured.get(group)
        _step(ctx, group, tick, tick + rule.hop_seconds, value, _breach(rule, value))
    state.groups = {g: s for g, s in state.groups.items() if s.status != INACTIVE}


def _absence(ctx: _Context, watermark: int) -> None:
    """Per key (or the whole logstore, ""): absent once nothing arrived for `after`; resolved when data returns."""
    rule, state = ctx.rule, ctx.state
    for groups in ctx.panes.values():
        for key, agg in groups.items():
            if agg.values and agg.hi > state.last_seen.get(key, -1):
                state.last_seen[key] = int(agg.hi)
    gone, back, again = [], [], []
    for key, seen in sorted(state.last_seen.items()):
        g = state.group(key)
        absent = watermark - seen >= rule.after_seconds
        if absent and g.status != FIRING:
            g.status, g.since, g.last_sent = FIRING, seen, ctx.now
            gone.append(GroupValue(key, float(watermark - seen)))
        elif absent and ctx.now - g.last_sent >= rule.repeat_seconds:
            g.last_sent = ctx.now
            again.append(GroupValue(key, float(watermark - seen)))
        elif not absent and g.status == FIRING:
            g.status = INACTIVE
            back.append(GroupValue(key, float(watermark - seen)))
    for transition, keys in ((Transition.FIRING, gone), (Transition.REPEAT, again), (Transition.RESOLVED, back)):
        if keys and (transition != Transition.RESOLVED or rule.send_resolved):
            since = min(state.groups[k.group].since for k in keys)
            extra = ",".join(f"{k.group}@{state.groups[k.group].since}" for k in keys)
            if transition == Transition.REPEAT:
                extra += f"/{watermark}"
            ctx.notify(transition, "", since, watermark, float(len(keys)), tuple(keys), extra=extra)
    state.groups = {k: g for k, g in state.groups.items() if g.status != INACTIVE}
