"""Rules judged per key rather than per window: a digest of the keys a record rule matched, absence of keys,
the lag of each shard, and the failed invocations of each function and shard."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from alerting.notification import GroupValue, Transition
from alerting.rules import Rule
from alerting.state import FIRING, INACTIVE
from alerting.transitions import Context, breaches, step

if TYPE_CHECKING:  # the SLS reader's imports stay out of the engine's (backtests read no trigger log)
    from alerting.failures import Failure


def record_digest(ctx: Context, ends: list[int]) -> None:
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


def lag(ctx: Context, measured: Mapping[str, float]) -> None:
    """Once per `every` of wall clock: each shard's lag through the state machine, as a window's value would."""
    rule, state = ctx.rule, ctx.state
    tick = int(ctx.now) - int(ctx.now) % rule.hop_seconds
    if tick <= state.closed_until:
        return
    state.closed_until = tick
    active = {g for g, s in state.groups.items() if s.status != INACTIVE}
    for group in sorted(set(measured) | active):
        value = measured.get(group)
        step(ctx, group, tick, tick + rule.hop_seconds, value, breaches(rule, value))
    state.groups = {g: s for g, s in state.groups.items() if s.status != INACTIVE}


ReadFailures = Callable[[Rule, int, int], "list[Failure]"]
FAILURE_SAMPLES = 5  # a few failures, newest first, named in a notification


def failed_invocations(ctx: Context, ends: list[int], read: ReadFailures, settle: int) -> None:
    """Each closed window through the state machine per function/shard: the deliveries whose first attempt is in
    it and that failed after their retries. Attempts are read `settle` beyond both ends, so a delivery whose
    retries straddle a boundary is judged whole, in the window of its first attempt."""
    rule, state = ctx.rule, ctx.state
    for end in ends:
        start = end - rule.window_seconds
        found: dict[str, list[Failure]] = {}
        for failure in read(rule, start - settle, end + settle):
            if start <= failure.first_attempt < end:
                found.setdefault(failure.group, []).append(failure)
        active = {g for g, s in state.groups.items() if s.status != INACTIVE}
        decided = state.decided.setdefault(end, {})
        for group in sorted(set(found) | active):
            failures = sorted(found.get(group, []), key=lambda f: -f.first_attempt)
            value = float(len(failures))
            decided[group] = [value, len(failures), breaches(rule, value)]
            step(ctx, group, start, end, value, decided[group][2],
                 tuple(f.sample for f in failures[:FAILURE_SAMPLES]))
        state.groups = {g: s for g, s in state.groups.items() if s.status != INACTIVE}


def absence(ctx: Context, watermark: int) -> None:
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
