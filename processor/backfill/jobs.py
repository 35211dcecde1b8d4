"""A backfill job's binding to its ranges: the manifest recorded at its first run, and the check of later runs.

A job's checkpoints say how far each shard got *within the range the job was started with*; read against another
range they make the events before that point look delivered. So the ranges a job first resolved to are recorded
(`JobManifests`) before its first event runs. A re-run of the same request resumes the recorded ranges (`--to end`
keeps the end it resolved to then); a request that resolves to other ranges is refused before anything is read.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from common.errors import CheckpointError, ConfigError
from processor.backfill.runs import BackfillJob, ShardRange
from processor.sls.shards import Position

log = logging.getLogger(__name__)


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
