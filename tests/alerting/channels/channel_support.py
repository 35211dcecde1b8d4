"""What the channel tests share: the dev SMTP server's test accounts and a notification like the evaluator's."""

from __future__ import annotations

import dataclasses

from alerting.notification import GroupValue, Notification, Sample, Transition

USERNAME = "alerts"
PASSWORD = "s3cret pass"  # a space, as real passwords may have
REFUSED = "nobody@example.com"
DEFERRED = "busy@example.com"
SENDER = "alerts@fleet.example.com"
TO = ("ops@example.com", "oncall@example.org")

FIRING = Notification(
    id="speeding-count.zone=north.1764662400.firing",
    rule="speeding-count",
    severity="critical",
    transition=Transition.FIRING,
    description="More than 50 speeding records in 5 minutes",
    value=73.0,
    threshold=50.0,
    comparison=">",
    window_start=1_764_662_400,  # 2025-12-02 08:00:00 UTC
    window_end=1_764_662_700,
    groups=(GroupValue("1234", 131.0), GroupValue("3512", 127.5)),
    history=((1_764_661_500, 12.0), (1_764_661_800, 20.0), (1_764_662_100, 44.0), (1_764_662_400, 73.0)),
    samples=(
        Sample(b'{"speed":131,"carID":1234}', "fleet", "driving", 2, "MTcwMDAwMDAwMDAwMDAwMA==", 1_764_662_431),
        Sample(b'{"speed":127.5,"carID":3512}', "fleet", "driving", 0, "MTcwMDAwMDAwMDAwMDAwNQ==", 1_764_662_502),
    ),
)
RESOLVED = dataclasses.replace(
    FIRING, id="speeding-count.zone=north.1764662400.resolved", transition=Transition.RESOLVED, value=8.0,
    window_start=1_764_663_000, window_end=1_764_663_300, groups=(), samples=(), firing_id=FIRING.id,
)
