"""Backfill: replay a cursor range of some shards through the handler logic, resumably, shards in parallel.

The range of each shard is cut into sub-ranges of at most `groups_per_event` log groups, each a trigger-shaped
event (the JSON an SLS trigger sends), handed to an `Invoker`. `LocalInvoker` runs the handler logic in this
process; `DryRunInvoker` runs it with a printing sink instead of producing; `processor.backfill.fc_invoker`
sends them to the deployed function, which takes the job's checkpoint scope from the event's jobName
(`processor.backfill.scope`).

Resuming: the events of one shard run in order and share the shard's checkpoint in the job's scope
(`backfill-<job id>`). A finished event leaves the checkpoint at its end, so on a re-run the events before it
are recognised as delivered without reading anything, and the interrupted one resumes inside its range.

That reasoning holds only for the range the job was started with, so a job id is bound to its ranges
(`processor.backfill.jobs`).
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from tenacity import retry_if_not_exception_type

from checkpoints.null import NullCheckpointStore
from common.cursors import cursor_from_position, cursor_position
from common.errors import ConfigError
from processor.backfill.scope import BACKFILL_JOB_PREFIX, job_scope
from processor.credentials import Credentials
from processor.delivery.dry_run import DEFAULT_MESSAGE_MAX_BYTES, OutputClosedError, PrintingSink
from processor.delivery.observers import Emit, ProjectedPage
from processor.event import TriggerEvent
from processor.invocation_retry import StopFlag, invocation_retrying
from processor.runtime import Runtime
from processor.sls.shards import Logstore, Position, ShardInfo

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
        return job_scope(self.job_id)

    def events(self, rng: ShardRange) -> list[TriggerEvent]:
        """[begin, end) cut into sub-ranges of at most `groups_per_event` log groups, as trigger events."""
        first, last = cursor_position(rng.begin), cursor_position(rng.end)
        if first == last:
            return []
        cuts = [*range(first, last, self.groups_per_event), last]
        cursors = [rng.begin, *(cursor_from_position(p) for p in cuts[1:-1]), rng.end]
        return [TriggerEvent(self.endpoint, self.project, self.logstore, rng.shard, b, e, self.parameter,
                             BACKFILL_JOB_PREFIX + self.job_id, f"{self.job_id}/{rng.shard}/{i}")
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
    """Runs the handler's loop with a sink that prints each record's value as a JSON line and a store that keeps
    nothing: a real run's checks apply (dead-letter tolerance, records too large), nothing is produced."""

    def __init__(self, runtime: Runtime, credentials: Credentials, out: BinaryIO, lock: Any) -> None:
        self.runtime = runtime
        self.credentials = credentials
        self.out = out
        self.lock = lock

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        trigger = TriggerEvent.from_json(event)
        kafka = self.runtime.settings.with_parameter(trigger.parameter).kafka
        max_bytes = int(kafka.producer_config().get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        sink = PrintingSink(self.out, self.lock, kafka.dlq_topic, max_bytes)
        return self.runtime.process(trigger, self.credentials, sink=sink, store=NullCheckpointStore()).as_dict()


@dataclass
class ShardProgress:
    """What one shard's backfill has done so far; sent after every event, and every page or so within one."""

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
    # Records of the pages of the event in flight: counted into `records_read` by the event's summary.
    records_in_event: int = 0
    # A dry run's reader closed the output (`| head`): the job is over, as asked.
    output_closed: bool = False

    @property
    def lost_log_groups(self) -> int:
        """Log groups that retention removed before they were read."""
        return sum(gap["log_groups"] for gap in self.gaps)

    def add(self, rng: ShardRange, summary: dict[str, Any]) -> None:
        self.events_done += 1
        self.events_skipped += bool(summary.get("already_delivered"))
        self.log_groups_done = cursor_position(summary["end_cursor"]) - cursor_position(rng.begin)
        self.log_groups_read += summary["log_groups"]
        self.records_read += summary["records_read"]
        self.records_in_event = 0
        self.produced += summary["produced"]
        self.dead_lettered += summary["dead_lettered"]
        self.gaps.extend(summary.get("gaps", []))
        self.seconds = time.time() - self.started_at

    def add_page(self, rng: ShardRange, page: ProjectedPage) -> None:
        self.log_groups_done = cursor_position(page.next_cursor) - cursor_position(rng.begin)
        self.records_in_event += sum(len(group.records) for group in page.groups)
        self.seconds = time.time() - self.started_at

    def as_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "log_groups_total": self.log_groups_total, "events_total": self.events_total,
                "log_groups_done": self.log_groups_done, "log_groups_read": self.log_groups_read,
                "lost_log_groups": self.lost_log_groups, "events_done": self.events_done,
                "events_skipped": self.events_skipped, "records_read": self.records_read, "produced": self.produced,
                "dead_lettered": self.dead_lettered, "gaps": self.gaps, "seconds": round(self.seconds, 3),
                "complete": self.complete, "error": self.error}


class PageProgress:
    """A `BatchObserver` that reports the shard in flight after its pages, so progress moves within an event.

    `run_shard` points it at the shard it runs; reports come at most every `every` seconds.
    """

    def __init__(self, every: float = 0.2) -> None:
        self.every = every
        self._shard: tuple[ShardRange, ShardProgress, Callable[[ShardProgress], None]] | None = None
        self._last = 0.0

    def track(self, rng: ShardRange, progress: ShardProgress, report: Callable[[ShardProgress], None]) -> None:
        self._shard = (rng, progress, report)

    def untrack(self) -> None:
        self._shard = None

    def on_batch(self, page: ProjectedPage, emit: Emit) -> None:
        if self._shard is None or self._shard[0].shard != page.shard:
            return
        rng, progress, report = self._shard
        progress.add_page(rng, page)
        if time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            report(progress)


def run_shard(job: BackfillJob, rng: ShardRange, invoker: Invoker, stop: StopFlag,
              report: Callable[[ShardProgress], None], sleep: Callable[[float], Any] | None = None,
              pages: PageProgress | None = None) -> ShardProgress:
    """Invoke the shard's events in order until done, stopped (between events) or out of retries.

    A dry run whose output was closed sets `stop`: the other shards end too, and quietly.
    """
    events = job.events(rng)
    progress = ShardProgress(rng.shard, rng.log_groups, len(events))
    report(progress)
    retrying = invocation_retrying(job.max_retry, stop, sleep or stop.wait, f"backfill shard {rng.shard}")
    retrying = retrying.copy(retry=retrying.retry & retry_if_not_exception_type(OutputClosedError))
    if pages is not None:
        pages.track(rng, progress, report)
    try:
        for event in events:
            if stop.is_set():
                break
            try:
                summary = retrying(invoker.invoke, event.to_dict())
            except OutputClosedError:
                progress.output_closed = True
                stop.set()
                break
            except Exception as exc:
                progress.error = f"event {event.task_id} [{event.begin_cursor}, {event.end_cursor}) failed: {exc}"
                log.error("backfill shard %d: %s", rng.shard, progress.error)
                break
            progress.add(rng, summary)
            report(progress)
    finally:
        if pages is not None:
            pages.untrack()
    progress.complete = progress.events_done == len(events)
    progress.seconds = time.time() - progress.started_at
    report(progress)
    return progress


def default_job_id(project: str, logstore: str, *args: str) -> str:
    """Stable for the same arguments, so running the same command again resumes the same job."""
    return "bf-" + uuid.uuid5(uuid.NAMESPACE_URL, "\0".join((project, logstore, *args))).hex[:12]
