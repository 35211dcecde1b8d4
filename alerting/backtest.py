"""`sls-kafka alerts test`: what rules would have sent over a past SLS range, sending nothing.

The range is read through the same loop as the function, with the alert observer, a sink that keeps the partials
in memory and produces nothing, and no checkpoint. The evaluator's engines then replay the time from the first
window to the last, closing each window at its end plus the grace, as the evaluator would have.
"""

from __future__ import annotations

from collections.abc import Sequence

from alerting.engine import RuleEngine
from alerting.notification import Notification
from alerting.observer import AlertObserver
from alerting.partials import Partial, PartialIndex, decode
from alerting.rules import RuleSet
from alerting.state import RuleState
from processor.dead_letter import Provenance
from processor.delivery.dry_run import DEFAULT_MESSAGE_MAX_BYTES, PrintingSink
from processor.event import TriggerEvent
from processor.kafka.tracking import DeliveryTracker
from processor.runtime import Runtime
from processor.sls.shards import Logstore, Position

PARTIALS = "backtest-partials"


class CapturingSink(PrintingSink):
    """Confirms everything at once; keeps what the observer emits, drops the projected records."""

    def __init__(self) -> None:
        super().__init__(None, None, "", DEFAULT_MESSAGE_MAX_BYTES)  # type: ignore[arg-type]
        self.captured: list[tuple[bytes | None, bytes]] = []

    def produce_all(self, topic: str, records: Sequence[tuple[bytes | None, bytes]], where: Provenance,
                    tracker: DeliveryTracker) -> int:
        if topic == PARTIALS:
            self.captured.extend(records)
        return sum(len(value) for _, value in records)


def read_range(runtime: Runtime, logstore: Logstore, endpoint: str, start: Position, stop: Position,
               rules: RuleSet, credentials: object) -> list[Partial]:
    runtime.observers[:] = [AlertObserver(rules, PARTIALS, runtime.settings.projection.fields)]
    sink = CapturingSink()
    for part in logstore.list_parts():
        begin = logstore.resolve(part.shard, start, "--from")
        end = logstore.resolve(part.shard, stop, "--to")
        if begin == end:
            continue
        event = TriggerEvent(endpoint, logstore.project, logstore.logstore, part.shard, begin, end, {}, "backtest",
                             f"shard-{part.shard}", 0)
        runtime.process(event, credentials, sink=sink)  # type: ignore[arg-type]
    return [decode(key, value) for key, value in sink.captured]


def replay(rules: RuleSet, partials: list[Partial]) -> list[tuple[int, Notification]]:
    """Each notification with the wall-clock time it would have been decided (a window's end plus the grace)."""
    index = PartialIndex()
    for partial in sorted(partials, key=lambda p: p.emitted_ms):
        index.add(partial)
    panes = [pane for p in index.partials() for rp in p.rules.values() for pane in rp.panes]
    if not panes:
        return []
    step = min(r.hop_seconds for r in rules.rules)
    first = min(panes) - min(panes) % step
    # Long enough after the last record for every window holding it to close, and the one after (resolutions).
    longest = max(max(r.window_seconds, r.after_seconds) for r in rules.rules)
    last = max(panes) + 2 * longest + rules.grace_seconds + step
    sent: list[tuple[int, Notification]] = []
    for rule in rules.rules:
        engine, state = RuleEngine(rule, rules.grace_seconds, rules.late_horizon_seconds), RuleState()
        state.closed_until = first - first % rule.hop_seconds
        if rule.kind == "absence" and not rule.key:
            state.last_seen[""] = first
        for now in range(first + rules.grace_seconds, last + 1, step):
            sent += [(now, n) for n in engine.evaluate(state, index, now).notifications]
    return sorted(sent, key=lambda s: (s[0], s[1].rule))
