"""Whose checkpoints an event's range belongs to: the trigger's, or a backfill job's (named by the event)."""

from __future__ import annotations

from common.errors import EventError
from processor.event import TriggerEvent

# A backfill event's jobName: the deployed function reads the job, so its checkpoints land in the job's scope.
BACKFILL_JOB_PREFIX = "sls-kafka-backfill/"


def job_scope(job_id: str) -> str:
    """A backfill job's checkpoint scope: separate from the trigger's ("") and from every other job."""
    return f"backfill-{job_id}"


def event_scope(event: TriggerEvent) -> str:
    """The checkpoint scope an event asks for: its backfill job's, or the trigger's ("")."""
    if not event.job_name.startswith(BACKFILL_JOB_PREFIX):
        return ""
    job_id = event.job_name[len(BACKFILL_JOB_PREFIX):]
    if not job_id or "/" in job_id:
        msg = f"event jobName {event.job_name!r}: a backfill job's name is {BACKFILL_JOB_PREFIX}<job id>"
        raise EventError(msg)
    return job_scope(job_id)
