"""An alert's transitions: the per-group state machine (pending, firing, resolved, with for, keep_firing and
repeat) and the notification each transition makes, with its deterministic id."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alerting.aggregates import Agg, merged
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


@dataclass
class Context:
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
               groups: tuple[GroupValue, ...] = (), extra: str = "", firing_id: str | None = None,
               samples: tuple[Sample, ...] | None = None) -> None:
        """`samples`: the records behind the transition when they are not in the partials (failed invocations)."""
        r = self.rule
        history = [(e - r.window_seconds, d[group][0]) for e, d in sorted(self.state.decided.items())
                   if group in d and d[group][0] is not None][-HISTORY_WINDOWS:]
        if samples is None:
            samples = tuple(Sample(s["record"].encode(), stream[0], stream[1], stream[2], s["cursor"], s["time"])
                            for stream, s in self.index.samples(r.name, start, end, group or None))
        n = Notification(
            id=notification_id(r.name, transition, group, start, extra), rule=r.name, severity=r.severity,
            transition=transition, description=r.description or r.name, value=value,
            threshold=r.threshold if r.kind in ("window", "failed_invocations") else None, comparison=_comparison(r),
            window_start=start, window_end=end,
            groups=groups, history=tuple(history), samples=samples,
            labels={**r.labels, **_group_label(r, group)},
            firing_id=firing_id)
        silenced = self.now < r.silence_until
        self.out.events.append({"event": "transition", "rule": r.name, "group": group, "id": n.id,
                                "transition": transition.value, "value": value, "window_start": start,
                                "window_end": end, "silenced": silenced})
        if not silenced:
            self.out.notifications.append(n)


def _group_label(rule: Rule, group: str) -> dict[str, str]:
    """Which group a window, lag or failed-invocations alert is about (a digest lists its groups instead)."""
    if rule.kind == "lag":
        return {"shard": group}
    if rule.kind == "failed_invocations":
        function, _, shard = group.rpartition("/")
        return {"function": function, "shard": shard}
    return {rule.key: group} if rule.key and group and rule.kind == "window" else {}


def _firing_id(rule: Rule, group: str, since: int) -> str:
    """The id the firing of `group` at window `since` got: repeats and the resolution thread under it."""
    return notification_id(rule.name, Transition.FIRING, group, since)


def _comparison(rule: Rule) -> str:
    """What the value is compared with: the threshold's operator, or what a record or absence rule tests."""
    if rule.kind in ("window", "failed_invocations"):
        return rule.comparison
    if rule.kind == "absence":
        return "absent"
    return rule.condition.text if rule.condition else ""


def breaches(rule: Rule, value: float | None) -> bool:
    return value is not None and _COMPARE[rule.comparison](value, rule.threshold)


def step(ctx: Context, group: str, start: int, end: int, value: float | None, breach: bool,
         samples: tuple[Sample, ...] | None = None) -> None:
    rule, g = ctx.rule, ctx.state.group(group)
    if breach:
        g.breaches, g.clears = g.breaches + 1, 0
        if g.status == FIRING:
            if ctx.now - g.last_sent >= rule.repeat_seconds:
                g.last_sent = ctx.now
                ctx.notify(Transition.REPEAT, group, start, end, value, firing_id=_firing_id(rule, group, g.since),
                           samples=samples)
        elif g.breaches >= rule.for_windows:
            g.status, g.since, g.last_sent = FIRING, start, ctx.now
            ctx.notify(Transition.FIRING, group, start, end, value, samples=samples)
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
                           firing_id=_firing_id(rule, group, g.since), samples=samples)
    else:
        g.status = INACTIVE
