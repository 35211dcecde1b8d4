"""One evaluation of one rule: close the windows whose end plus grace has passed (by wall clock, since an idle
shard sends no watermark), re-check closed windows for late records, and run the alert state machine.

Returns the notifications to send and the history events; it changes only the rule's `RuleState`.
"""

from __future__ import annotations

from collections.abc import Mapping

from alerting.aggregates import value_of
from alerting.keyed import ReadFailures, absence, failed_invocations, lag, record_digest
from alerting.notification import Transition
from alerting.partials import PartialIndex
from alerting.rules import Rule
from alerting.state import INACTIVE, RuleState
from alerting.transitions import Context, Outcome, breaches, step


class RuleEngine:
    def __init__(self, rule: Rule, grace: int, late_horizon: int) -> None:
        self.rule, self.grace, self.late_horizon = rule, grace, late_horizon

    def evaluate(self, state: RuleState, index: PartialIndex, now: float,
                 measured: Mapping[str, float] | None = None, read_failures: ReadFailures | None = None) -> Outcome:
        """`measured`: what lag rules compare, per group (shard); `read_failures`: the trigger log's failed
        deliveries, for failed_invocations rules (without it, as in a backtest, they judge nothing)."""
        rule, out = self.rule, Outcome()
        if rule.kind == "lag":
            lag(Context(rule, state, index, {}, now, out), measured or {})
            return out
        if rule.kind == "failed_invocations" and read_failures is None:
            return out
        watermark = int(now) - self.grace
        if not state.closed_until:
            # Windows that closed before the evaluator first ran are not judged: start at the current one.
            state.closed_until = watermark - watermark % rule.hop_seconds
            if rule.kind == "absence" and not rule.key:
                # A logstore that never sent anything is absent `after` the evaluator first looked.
                state.last_seen.setdefault("", state.closed_until)
        panes = index.panes(rule.name)
        ctx = Context(rule, state, index, panes, now, out)
        ends = range(state.closed_until + rule.hop_seconds, watermark + 1, rule.hop_seconds)
        if rule.kind == "window":
            _recheck_windows(ctx)
            for end in ends:
                _close_window(ctx, end)
        elif rule.kind == "record":
            record_digest(ctx, list(ends))
        elif rule.kind == "failed_invocations" and read_failures is not None:
            failed_invocations(ctx, list(ends), read_failures, self.grace)
        else:
            absence(ctx, watermark)
        if ends:
            state.closed_until = ends[-1]
        horizon = state.closed_until - self.late_horizon
        state.decided = {end: d for end, d in state.decided.items() if end > horizon}
        return out


def _close_window(ctx: Context, end: int) -> None:
    rule, state = ctx.rule, ctx.state
    start = end - rule.window_seconds
    groups = ctx.groups_in(end) | {g for g, s in state.groups.items() if s.status != INACTIVE}
    if rule.key is None:
        groups.add("")
    decided = state.decided.setdefault(end, {})
    for group in sorted(groups):
        agg = ctx.window(end, group)
        value = value_of(agg, rule.aggregate, rule.percentile)
        breach = breaches(rule, value)
        decided[group] = [value, agg.n, breach]
        step(ctx, group, start, end, value, breach)
    for group in [g for g, s in state.groups.items() if s.status == INACTIVE]:
        del state.groups[group]


def _recheck_windows(ctx: Context) -> None:
    """Late records: a closed window whose records changed is counted, and corrected if its outcome changed."""
    rule, state = ctx.rule, ctx.state
    for end, decided in sorted(state.decided.items()):
        for group in sorted(ctx.groups_in(end) | set(decided)):
            agg = ctx.window(end, group)
            before = decided.get(group, [None, 0, False])
            if agg.n == before[1]:
                continue
            value = value_of(agg, rule.aggregate, rule.percentile)
            breach = breaches(rule, value)
            late = agg.n - before[1]
            state.late_records += max(late, 0)
            ctx.out.events.append({"event": "late", "rule": rule.name, "group": group, "records": late,
                                   "window_start": end - rule.window_seconds, "window_end": end,
                                   "value_before": before[0], "value": value})
            decided[group] = [value, agg.n, breach]
            if breach != before[2]:
                ctx.notify(Transition.CORRECTION, group, end - rule.window_seconds, end, value,
                           extra=f"{agg.n}")
