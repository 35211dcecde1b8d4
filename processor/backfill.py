"""Backfill: replay a cursor range of some shards through the handler logic, resumably, shards in parallel.

The range of each shard is cut into sub-ranges of at most `groups_per_event` log groups, each a trigger-shaped
event (the JSON an SLS trigger sends), handed to an `Invoker`. `LocalInvoker` runs the handler logic in this
process; `DryRunInvoker` runs it with a printing sink instead of producing. An invoker for the deployed
function would send the same events to FC (InvokeFunction) and return its response; it needs the handler to take
the job's checkpoint scope from the event (see the README).

Resuming: the events of one shard run in order and share the shard's checkpoint in the job's scope
(`backfill-<job id>`). A finished event leaves the checkpoint at its end, so on a re-run the events before it
are recognised as delivered without reading anything, and the interrupted one resumes inside its range.

That reasoning holds only for the range the job was started with: read against another range, the checkpoint
makes every event before it look delivered. So a job id is bound to its per-shard ranges by a manifest
(`JobManifests`), recorded before the job's first event runs. A re-run of the same request resumes the
recorded ranges (`--to end` keeps the end it resolved to then); a request that resolves to other ranges is
refused before anything is read.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson
from tenacity import retry_if_not_exception_type

from checkpoints.null import NullCheckpointStore
from common.cursors import cursor_from_position
from common.errors import CheckpointError, ConfigError
from processor.credentials import Credentials
from processor.delivery.dry_run import DEFAULT_MESSAGE_MAX_BYTES, OutputClosedError, PrintingSink
from processor.delivery.observers import Emit, ProjectedPage
from processor.event import TriggerEvent, cursor_position
from processor.invocation_retry import StopFlag, invocation_retrying
from processor.runtime import Runtime
from processor.shards import Logstore, Position, ShardInfo

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


@dataclass(frozen=True)
class JobRequest:
    """What a backfill command asked for, normalised: equal requests mean the same job.

    Positions are kept as resolved from the text but not yet against SLS (`begin`, `end`, unix seconds or a
    cursor), so an ISO time and the same instant in unix seconds are one request.
    """

    start: str | int
    stop: str | int
    shards: tuple[int, ...] | None
    parameter: dict[str, Any]

    @classmethod
    def of(cls, start: Position, stop: Position, shards: Sequence[int] | None,
           parameter: dict[str, Any]) -> JobRequest:
        return cls(start.value, stop.value, None if shards is None else tuple(sorted(set(shards))),
                   orjson.loads(orjson.dumps(parameter)))

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.start, "to": self.stop, "shards": None if self.shards is None else list(self.shards),
                "parameter": self.parameter}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> JobRequest:
        shards = doc["shards"]
        return cls(doc["from"], doc["to"], None if shards is None else tuple(shards), doc["parameter"])

    def describe(self) -> str:
        shards = "all" if self.shards is None else ",".join(map(str, self.shards))
        text = f"--from {self.start} --to {self.stop} --shards {shards}"
        return text + (f" --parameter '{orjson.dumps(self.parameter).decode()}'" if self.parameter else "")


@dataclass(frozen=True)
class JobManifest:
    """A job as first planned: its request and the per-shard ranges that request resolved to then."""

    job_id: str
    project: str
    logstore: str
    request: JobRequest
    ranges: tuple[ShardRange, ...]
    created_at: float = field(default_factory=time.time)
    # Set once every shard reached its end: the job's checkpoints may be gone then (its consumer group deleted).
    completed_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "project": self.project, "logstore": self.logstore,
                "request": self.request.as_dict(),
                "ranges": [{"shard": r.shard, "begin": r.begin, "end": r.end} for r in self.ranges],
                "created_at": self.created_at, "completed_at": self.completed_at}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> JobManifest:
        return cls(doc["job_id"], doc["project"], doc["logstore"], JobRequest.from_dict(doc["request"]),
                   tuple(ShardRange(r["shard"], r["begin"], r["end"]) for r in doc["ranges"]), doc["created_at"],
                   doc.get("completed_at"))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class JobManifests:
    """One JSON file per job, `<directory>/backfill-jobs/<project>/<logstore>/<job id>.json`.

    Written once, atomically and durably (temp file, fsync, hard link, directory fsync): the link fails when
    the file exists, so of two first runs racing on one job id exactly one records its ranges.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path(self, project: str, logstore: str, job_id: str) -> Path:
        parts = ("backfill-jobs", project, logstore)
        return self.directory.joinpath(*(_UNSAFE.sub("_", p) for p in parts), f"{_UNSAFE.sub('_', job_id)}.json")

    def load(self, project: str, logstore: str, job_id: str) -> JobManifest | None:
        path = self.path(project, logstore, job_id)
        try:
            return JobManifest.from_dict(orjson.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            msg = (f"backfill job manifest {path} is unreadable ({exc!r}): the job's ranges are unknown, so it "
                   "cannot be resumed safely; use a new --job-id")
            raise CheckpointError(msg) from exc

    def record(self, manifest: JobManifest) -> JobManifest:
        """Record `manifest` unless the job has one already; returns the one recorded."""
        self._write(manifest, overwrite=False)
        recorded = self.load(manifest.project, manifest.logstore, manifest.job_id)
        if recorded is None:
            path = self.path(manifest.project, manifest.logstore, manifest.job_id)
            msg = f"backfill job manifest {path} disappeared right after it was recorded; is {self.directory} shared?"
            raise CheckpointError(msg)
        return recorded

    def complete(self, manifest: JobManifest) -> JobManifest:
        """Mark the job complete: from now on a re-run reports it done without reading any checkpoint."""
        done = replace(manifest, completed_at=time.time())
        self._write(done, overwrite=True)
        return done

    def _write(self, manifest: JobManifest, overwrite: bool) -> None:
        path = self.path(manifest.project, manifest.logstore, manifest.job_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(orjson.dumps(manifest.as_dict(), option=orjson.OPT_INDENT_2))
                    fh.flush()
                    os.fsync(fh.fileno())
                try:
                    if overwrite:
                        os.replace(tmp, path)
                    else:
                        os.link(tmp, path)
                except FileExistsError:
                    return
                dir_fd = os.open(path.parent, os.O_DIRECTORY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:
            msg = f"cannot record backfill job manifest {path}: {exc}"
            raise CheckpointError(msg) from exc


def bind_job(manifests: JobManifests, job: BackfillJob, request: JobRequest,
             planned: Callable[[], list[ShardRange]],
             progressed: Callable[[list[ShardRange]], list[int]]) -> list[ShardRange]:
    """The ranges `job` runs: recorded at its first run, or planned now and recorded; a ConfigError otherwise.

    `planned` resolves the request against SLS; it is skipped when the request is the job's own, since a
    re-resolved `--to end` (or a `begin` moved by retention) is not another job. `progressed` names the
    shards whose checkpoints already hold progress in the job's scope: a job without a manifest but with
    progress was started where its manifest is not (another machine sharing an `sls` or `kafka` store, or a
    version without manifests), and its range is unknown.
    """
    recorded = manifests.load(job.project, job.logstore, job.job_id)
    if recorded is not None and recorded.request == request:
        log.info("backfill job %s: resuming the ranges recorded at its first run (%s); data written since lies "
                 "outside them: another --job-id covers it", job.job_id,
                 time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(recorded.created_at)))
        return list(recorded.ranges)
    ranges = planned()
    if recorded is None:
        started = progressed(ranges)
        if started:
            path = manifests.path(job.project, job.logstore, job.job_id)
            msg = (f"backfill job {job.job_id!r} already has checkpoints (shard(s) {', '.join(map(str, started))} "
                   f"in scope {job.scope}) but no manifest at {path}: it was started on another machine or by an "
                   "older version, so the range its checkpoints belong to is unknown here. Resume it where it "
                   "was started, or use a new --job-id")
            raise ConfigError(msg)
        recorded = manifests.record(JobManifest(job.job_id, job.project, job.logstore, request, tuple(ranges)))
    _check_same_job(job, recorded, request, ranges)
    return list(recorded.ranges)


def _check_same_job(job: BackfillJob, recorded: JobManifest, request: JobRequest, ranges: list[ShardRange]) -> None:
    then = {r.shard: r for r in recorded.ranges}
    now = {r.shard: r for r in ranges}
    differ = [f"shard {shard}: recorded {_range_text(then.get(shard))}, requested {_range_text(now.get(shard))}"
              for shard in sorted(then.keys() | now.keys()) if then.get(shard) != now.get(shard)]
    if recorded.request.parameter != request.parameter:
        differ.append(f"--parameter: recorded {orjson.dumps(recorded.request.parameter).decode()}, requested "
                      f"{orjson.dumps(request.parameter).decode()}")
    if differ:
        msg = (f"backfill job {job.job_id!r} is bound to the ranges it was started with ({recorded.request.describe()})"
               f" and this run asks for others; nothing was read. {'; '.join(differ)}. Repeat the job's own "
               "arguments to resume it, or use a new --job-id for the new range")
        raise ConfigError(msg)


def _range_text(rng: ShardRange | None) -> str:
    return "none" if rng is None else f"[{rng.begin}, {rng.end})"


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
