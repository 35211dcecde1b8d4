"""Backfill: replay a cursor range of some shards through the handler logic, resumably, shards in parallel.

The range of each shard is cut into sub-ranges of at most `groups_per_event` log groups, each a trigger-shaped
event (the JSON an SLS trigger sends), handed to an `Invoker`:

    class Invoker(Protocol):
        def invoke(self, event: dict) -> dict: ...   # the handler's summary (pipeline.Summary.as_dict())

`LocalInvoker` runs the handler logic in this process; `DryRunInvoker` prints projected records instead of
producing. An invoker for the deployed function would send the same events to FC (InvokeFunction) and return
its response; it needs the handler to take the job's checkpoint scope from the event (see the README).

Resuming: the events of one shard run in order and share the shard's checkpoint in the job's scope
(`backfill-<job id>`). A finished event leaves the checkpoint at its end, so on a re-run the events before it
are recognised as delivered without reading anything, and the interrupted one resumes inside its range.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from processor.credentials import Credentials
from processor.errors import ConfigError
from processor.event import TriggerEvent, cursor_position
from processor.pipeline import Summary
from processor.poller import StopFlag, invocation_retrying
from processor.retry import RetryStats, sls_retrying
from processor.runtime import Runtime
from processor.shards import Logstore, Position, ShardInfo, cursor_from_position
from processor.source import Gap, ShardRangeSource

log = logging.getLogger(__name__)


class Invoker(Protocol):
    def invoke(self, event: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ShardRange:
    shard: int
    begin: str
    end: str

    @property
    def log_groups(self) -> int:
        return cursor_position(self.end) - cursor_position(self.begin)


@dataclass(frozen=True)
class BackfillJob:
    endpoint: str
    project: str
    logstore: str
    job_id: str
    groups_per_event: int = 2000
    max_retry: int = 3
    parameter: dict[str, Any] = field(default_factory=dict)

    @property
    def scope(self) -> str:
        """Checkpoint scope: separate from the trigger's ("") and from every other job."""
        return f"backfill-{self.job_id}"

    def events(self, rng: ShardRange) -> list[TriggerEvent]:
        """[begin, end) cut into sub-ranges of at most `groups_per_event` log groups, as trigger events."""
        first, last = cursor_position(rng.begin), cursor_position(rng.end)
        if first == last:
            return []
        cuts = [*range(first, last, self.groups_per_event), last]
        cursors = [rng.begin, *(cursor_from_position(p) for p in cuts[1:-1]), rng.end]
        return [TriggerEvent(self.endpoint, self.project, self.logstore, rng.shard, b, e, self.parameter,
                             f"sls-kafka-backfill/{self.job_id}", f"{self.job_id}/{rng.shard}/{i}")
                for i, (b, e) in enumerate(itertools.pairwise(cursors))]


def plan(logstore: Logstore, shards: Sequence[ShardInfo], start: Position, stop: Position) -> list[ShardRange]:
    """Resolve --from/--to in every shard; a range ending before it begins is an error naming the shard."""
    ranges = []
    for shard in shards:
        begin = logstore.resolve(shard.shard, start, "--from")
        end = logstore.resolve(shard.shard, stop, "--to")
        if cursor_position(end) < cursor_position(begin):
            msg = (f"--to {stop.text} lies before --from {start.text} in shard {shard.shard} "
                   f"(cursors {end} < {begin})")
            raise ConfigError(msg)
        ranges.append(ShardRange(shard.shard, begin, end))
    return ranges


class LocalInvoker:
    """Runs the handler logic in this process, checkpointing in the job's scope."""

    def __init__(self, runtime: Runtime, credentials: Credentials, scope: str) -> None:
        self.runtime = runtime
        self.credentials = credentials
        self.scope = scope

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        trigger = TriggerEvent.from_json(event)
        return self.runtime.process(trigger, self.credentials, scope=self.scope).as_dict()


class DryRunInvoker:
    """Reads and projects like the handler, writing each record's value as a JSON line instead of producing.

    Nothing is checkpointed. Records that would be dead-lettered are logged with their reason.
    """

    def __init__(self, runtime: Runtime, credentials: Credentials, out: BinaryIO, lock: Any) -> None:
        self.runtime = runtime
        self.credentials = credentials
        self.out = out
        self.lock = lock

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        ev = TriggerEvent.from_json(event)
        settings = self.runtime.settings.with_parameter(ev.parameter)
        projector = self.runtime.projector(settings)
        stats = RetryStats()
        s = Summary(ev.project, ev.logstore, ev.shard, ev.begin_cursor, ev.end_cursor, ev.begin_cursor, ev.end_cursor)

        def on_gap(gap: Gap) -> None:
            s.gaps.append(gap.as_dict())

        source = ShardRangeSource(self.runtime.sls_client(ev.endpoint, self.credentials), ev.project, ev.logstore,
                                  ev.shard, ev.begin_cursor, ev.end_cursor, settings.source,
                                  sls_retrying(self.runtime.deadline(None), stats), on_gap)
        for batch in source:
            lines = []
            for group in batch.groups:
                good, bad = projector.project_group(group)
                lines.extend(value for _key, value in good)
                for rejected in bad:
                    log.warning("shard %d cursor %s: would be dead-lettered: %s", ev.shard, batch.cursor,
                                rejected.reason)
                s.dead_lettered += len(bad)
                s.records_read += len(good) + len(bad)
            s.produced += len(lines)
            s.log_groups += len(batch.groups)
            s.batches += 1
            with self.lock:
                self.out.write(b"".join(line + b"\n" for line in lines))
                self.out.flush()
        s.sls_retries = stats.sls_retries
        s.duration_seconds = round(time.monotonic() - started, 3)
        return s.as_dict()


@dataclass
class ShardProgress:
    """What one shard's backfill has done so far; sent after every event."""

    shard: int
    log_groups_total: int
    events_total: int
    log_groups_done: int = 0
    log_groups_read: int = 0
    events_done: int = 0
    events_skipped: int = 0
    records_read: int = 0
    produced: int = 0
    dead_lettered: int = 0
    gaps: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    seconds: float = 0.0
    complete: bool = False
    error: str | None = None

    def add(self, rng: ShardRange, summary: dict[str, Any]) -> None:
        self.events_done += 1
        self.events_skipped += bool(summary.get("already_delivered"))
        self.log_groups_done = cursor_position(summary["end_cursor"]) - cursor_position(rng.begin)
        self.log_groups_read += summary["log_groups"]
        self.records_read += summary["records_read"]
        self.produced += summary["produced"]
        self.dead_lettered += summary["dead_lettered"]
        self.gaps.extend(summary.get("gaps", []))
        self.seconds = time.time() - self.started_at


def run_shard(job: BackfillJob, rng: ShardRange, invoker: Invoker, stop: StopFlag,
              report: Callable[[ShardProgress], None], sleep: Callable[[float], Any] | None = None) -> ShardProgress:
    """Invoke the shard's events in order until done, stopped (between events) or out of retries."""
    events = job.events(rng)
    progress = ShardProgress(rng.shard, rng.log_groups, len(events))
    report(progress)
    retrying = invocation_retrying(job.max_retry, stop, sleep or stop.wait, f"backfill shard {rng.shard}")
    for event in events:
        if stop.is_set():
            break
        try:
            summary = retrying(invoker.invoke, event.to_dict())
        except Exception as exc:
            progress.error = f"event {event.task_id} [{event.begin_cursor}, {event.end_cursor}) failed: {exc}"
            log.error("backfill shard %d: %s", rng.shard, progress.error)
            break
        progress.add(rng, summary)
        report(progress)
    progress.complete = progress.events_done == len(events)
    progress.seconds = time.time() - progress.started_at
    report(progress)
    return progress


def default_job_id(project: str, logstore: str, *args: str) -> str:
    """Stable for the same arguments, so running the same command again resumes the same job."""
    return "bf-" + uuid.uuid5(uuid.NAMESPACE_URL, "\0".join((project, logstore, *args))).hex[:12]
