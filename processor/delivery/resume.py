"""Where a run over a range starts, from what the checkpoint store proves."""

from __future__ import annotations

from typing import Literal, NamedTuple

from checkpoints.base import Checkpoint, position
from common.cursors import cursor_position
from processor.event import TriggerEvent

ResumeState = Literal["first", "done", "resume", "catch-up", "unproven", "begin"]


class ResumePoint(NamedTuple):
    state: ResumeState
    cursor: str


def resume_point(event: TriggerEvent, saved: Checkpoint | None) -> ResumePoint:
    """Where a run over `event`'s range starts, given the stored checkpoint.

    - 'first': nothing stored; the range's begin is recorded as the shard's origin before anything is read, so
      that a later range finds this one's stretch behind it if this run fails;
    - 'done': the stored stretch proves the whole range delivered;
    - 'resume': the checkpoint lies inside the range;
    - 'catch-up': the checkpoint lies before the range: [checkpoint, begin) was never confirmed (an earlier
      invocation failed and the trigger moved on), so the run starts there rather than jump over it;
    - 'unproven': the stored stretch starts after the range's begin (another range was recorded first, or
      a per-instance file store never saw this one), so nothing proves the range delivered: it is delivered
      from its begin, and its stretch joins the stored one when they meet;
    - 'begin': the checkpoint is exactly the range's begin.
    """
    begin, end = event.begin_cursor, event.end_cursor
    if saved is None:
        return ResumePoint("first", begin)
    if saved.origin is not None and position(saved.origin) > cursor_position(begin):
        return ResumePoint("unproven", begin)
    if saved.covers(begin, end):
        return ResumePoint("done", saved.cursor)
    pos = position(saved.cursor)
    if pos > cursor_position(begin):
        return ResumePoint("resume", saved.cursor)
    if pos < cursor_position(begin):
        return ResumePoint("catch-up", saved.cursor)
    return ResumePoint("begin", begin)
