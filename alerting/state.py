"""What the evaluator remembers per rule between evaluations; persisted as JSON in the compacted state topic.

A group's alert state (Prometheus's inactive/pending/firing) survives restarts with it, so a firing alert stays
firing. The decisions of recently closed windows are kept so late records that change one can be detected.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from alerting.notification import Transition

INACTIVE, PENDING, FIRING = "inactive", "pending", "firing"


@dataclass
class GroupState:
    status: str = INACTIVE
    breaches: int = 0  # consecutive breaching windows
    clears: int = 0  # consecutive clear windows while firing
    since: int = 0  # start of the window that made it fire (absence: the last record seen then)
    last_sent: float = 0.0  # wall clock of the last firing or repeat notification


@dataclass
class RuleState:
    closed_until: int = 0  # every window (pane) ending at or before this is closed; 0: never evaluated
    groups: dict[str, GroupState] = field(default_factory=dict)
    # window end -> group -> [value, records, breach]: closed windows within the late horizon
    decided: dict[int, dict[str, list[Any]]] = field(default_factory=dict)
    late_records: int = 0
    quiet_until: dict[str, int] = field(default_factory=dict)  # record rules: per key, event time
    last_seen: dict[str, int] = field(default_factory=dict)  # absence rules: per key, event time

    def group(self, name: str) -> GroupState:
        state = self.groups.get(name)
        if state is None:
            state = self.groups[name] = GroupState()
        return state

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["decided"] = {str(k): v for k, v in self.decided.items()}
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RuleState:
        return cls(
            closed_until=int(doc["closed_until"]),
            groups={g: GroupState(**s) for g, s in doc["groups"].items()},
            decided={int(k): v for k, v in doc["decided"].items()},
            late_records=int(doc["late_records"]),
            quiet_until={k: int(v) for k, v in doc["quiet_until"].items()},
            last_seen={k: int(v) for k, v in doc["last_seen"].items()},
        )


def notification_id(rule: str, transition: Transition, group: str, window_start: int, extra: str = "") -> str:
    """Derived from what the transition is about, never from when it is sent: a retried evaluation makes the same."""
    text = "\x1f".join((rule, transition.value, group, str(window_start), extra))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
