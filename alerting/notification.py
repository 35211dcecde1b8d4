"""What the evaluator hands to a channel, and what a channel answers: the contract between deciding and sending.

A notification is one alert transition. Its `id` is derived from the rule, the group and the transition (never
from the time it was sent), so a retried or raced evaluator produces the same id; channels turn it into the
email's `Message-ID` or the webhook's idempotency key, and the evaluator's outbox refuses a second send of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol


class Transition(str, Enum):
    FIRING = "firing"
    RESOLVED = "resolved"
    REPEAT = "repeat"
    CORRECTION = "correction"  # late records changed a closed window's outcome


@dataclass(frozen=True, slots=True)
class Sample:
    """A record that made the alert, with where it sits in SLS so a reader can find it."""

    record: bytes
    project: str
    logstore: str
    shard: int
    cursor: str
    event_time: int


@dataclass(frozen=True, slots=True)
class GroupValue:
    """One member of a digest: the group (e.g. a carID or a zone) and its value in the window."""

    group: str
    value: float


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    rule: str
    severity: str
    transition: Transition
    description: str
    value: float | None
    threshold: float | None
    comparison: str  # e.g. ">", "<", "absent"
    window_start: int  # epoch seconds, event time
    window_end: int
    groups: Sequence[GroupValue] = ()
    history: Sequence[tuple[int, float]] = ()  # (window start, value) of recent windows, oldest first
    samples: Sequence[Sample] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    # The id of the firing this transition follows (resolved, repeat, correction), so that channels thread it
    # under the firing (an email's In-Reply-To); None for a firing.
    firing_id: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """A send attempt's outcome; `reply` is the server's answer as it gave it (SMTP reply, HTTP status and body)."""

    delivered: bool
    retryable: bool
    reply: str


class Channel(Protocol):
    """Sends one notification; never raises for a refusal or an outage, it answers with a `SendResult`."""

    name: str

    def send(self, notification: Notification) -> SendResult: ...
