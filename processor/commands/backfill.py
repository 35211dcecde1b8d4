"""`sls-kafka backfill`: replay a range of shards into Kafka (or print it with --dry-run), resumably."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import asdict
from typing import Any, TextIO

import orjson

from checkpoints.base import CheckpointKey
from checkpoints.sls_consumer_group import SlsConsumerGroupStore
from processor.backfill import (
    BackfillJob,
    JobManifests,
    JobRequest,
    ShardProgress,
    ShardRange,
    bind_job,
    default_job_id,
    plan,
)
from processor.backfill_pool import run_parallel, shards_with_progress, stop_flag
from processor.commands.common import (
    EnvDefault,
    LogstoreAccess,
    access_from_args,
    add_logstore_options,
    apply_log_level,
    check_job_id,
    check_order,
    graceful_stop,
    int_in_range,
    parse_parameter,
    parse_position,
    parse_shards,
    settings_without_kafka,
)
from processor.config import Settings
from processor.errors import ConfigError
from processor.shards import ShardInfo, select_shards

log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_STOPPED = 3


def register(sub: Any) -> None:
    p = sub.add_parser(
        "backfill", help="replay a cursor or time range of some shards into Kafka, resumably",
        description="Replay [--from, --to) of the chosen shards through the same projection and sink as the "
        "function, shards in parallel worker processes. Each shard's range is cut into trigger-shaped events of at "
        "most --groups-per-event log groups. Progress is checkpointed under the job id: running the same command "
        "again continues where it stopped, over the ranges it resolved to at its first run (a later --to end does "
        "not extend it). The job id is bound to those ranges: a run asking for others under it is refused. "
        "SIGINT/SIGTERM finish the events in flight and stop (exit 3); a second "
        "signal abandons them. Kafka and checkpoint settings come from the environment, as for the function.")
    add_logstore_options(p)
    p.add_argument("--from", dest="start", default="begin", metavar="POS",
                   help="start: a cursor (one shard), unix seconds, ISO-8601 time with offset, begin or end "
                   "(default begin)")
    p.add_argument("--to", dest="stop", default="end", metavar="POS",
                   help="end, exclusive, same forms as --from (default end: the end when the command starts)")
    p.add_argument("--shards", type=parse_shards, default=None, metavar="IDS",
                   help="shard ids, e.g. 0,1,3, or all (default: all, readonly shards included)")
    p.add_argument("--processes", type=int_in_range(1, 256), metavar="N",
                   help="worker processes (default: the number of shards, at most the CPU count)")
    p.add_argument("--job-id", help="names the job's checkpoints and binds them to the job's first ranges "
                   "(default: derived from project, logstore, --from, --to, --shards and --parameter)")
    p.add_argument("--groups-per-event", type=int_in_range(1, 10**7), default=2000, metavar="N",
                   help="log groups per event (default 2000); each event is one handler invocation")
    p.add_argument("--max-retry", action=EnvDefault, env="MAX_RETRY_TIME", type=int_in_range(0, 100), default=3,
                   metavar="N",
                   help="retries of a failed event, with backoff (default 3)")
    p.add_argument("--parameter", metavar="JSON", help="functionParameter overrides, e.g. '{\"topic\": \"other\"}'")
    p.add_argument("--dry-run", action="store_true",
                   help="print the projected records (one JSON value per line) instead of producing; no checkpoints; "
                   "the summary goes to stderr")
    p.add_argument("--progress-every", type=float, default=10.0, metavar="SECONDS",
                   help="when stderr is not a terminal, log progress this often (default 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start, stop = parse_position(args.start, "--from"), parse_position(args.stop, "--to")
    check_order(start, stop)
    parameter = parse_parameter(args.parameter)
    access = access_from_args(args)
    job_id = check_job_id(args.job_id) if args.job_id else default_job_id(
        access.project, access.logstore, start.text, stop.text, str(args.shards), orjson.dumps(parameter).decode())
    settings = settings_without_kafka() if args.dry_run else Settings.from_env()
    apply_log_level(settings, args.verbose)
    settings.with_parameter(parameter)
    logstore = access.logstore_api()

    def planned() -> list[ShardRange]:
        shards = select_shards(logstore.shards(), args.shards)
        if start.kind == "cursor" or stop.kind == "cursor":
            _require_one_shard(shards, args.shards)
        return plan(logstore, shards, start, stop)

    job = BackfillJob(access.endpoint, access.project, access.logstore, job_id, args.groups_per_event,
                      args.max_retry, parameter)
    manifests = JobManifests(settings.checkpoint.directory)
    if args.dry_run:
        ranges = planned()  # no checkpoints, so nothing to bind the range to
    else:
        ranges = bind_job(manifests, job, JobRequest.of(start, stop, args.shards, parameter), planned,
                          lambda rs: shards_with_progress(job, settings, rs, access.credentials))
        done = manifests.load(job.project, job.logstore, job.job_id)
        if done is not None and done.completed_at is not None:
            log.info("backfill job %s is already complete (%s); nothing to do", job_id,
                     time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(done.completed_at)))
            finished = [ShardProgress(r.shard, r.log_groups, len(job.events(r)), log_groups_done=r.log_groups,
                                      complete=True) for r in ranges]
            summary = {**_summary(job, args, 0, finished, 0.0), "already_complete": True}
            sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
    processes = args.processes or max(1, min(len(ranges), os.cpu_count() or 1))
    log.info("backfill job %s (checkpoint scope %s): shards %s, %d log groups, %d process(es)%s", job_id, job.scope,
             ",".join(str(r.shard) for r in ranges), sum(r.log_groups for r in ranges), processes,
             ", dry run" if args.dry_run else "")
    if not args.verbose:
        # Lines per event would bury the progress lines; -v brings them back.
        for name in ("processor.runtime", "processor.delivery"):
            logging.getLogger(name).setLevel(logging.WARNING)
    view = ProgressView(sys.stderr, sys.stderr.isatty(), args.progress_every)
    flag = stop_flag()
    started = time.monotonic()
    with graceful_stop(flag, "the events in flight"):
        results = run_parallel(job, settings, ranges, access.credentials, processes, args.dry_run, flag, view.update)
    view.close()
    if not args.dry_run and results and all(r.complete and not r.error for r in results):
        _finish_job(manifests, job, settings, access)
    summary = _summary(job, args, processes, results, time.monotonic() - started)
    out = sys.stderr if args.dry_run else sys.stdout
    out.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    if any(r.error for r in results):
        return EXIT_FAILED
    return 0 if summary["complete"] else EXIT_STOPPED


def _finish_job(manifests: JobManifests, job: BackfillJob, settings: Settings, access: LogstoreAccess) -> None:
    """Record the job complete, then free its consumer group: SLS allows 30 per logstore, and a finished job's
    checkpoints are not needed once its manifest says it is complete."""
    recorded = manifests.load(job.project, job.logstore, job.job_id)
    if recorded is None:
        return
    manifests.complete(recorded)
    if settings.checkpoint.store == "sls":
        store = SlsConsumerGroupStore(access.logstore_api().client, settings.checkpoint.consumer_group)
        if store.drop_scope(job.project, job.logstore, job.scope):
            log.info("backfill job %s complete: consumer group %s deleted", job.job_id,
                     store.group_name(CheckpointKey(job.project, job.logstore, 0, job.scope)))


def _require_one_shard(shards: list[ShardInfo], wanted: list[int] | None) -> None:
    if len(shards) != 1:
        given = "all shards" if wanted is None else f"shards {','.join(map(str, wanted))}"
        msg = f"a cursor belongs to one shard, but {given} are selected: add --shards <the cursor's shard>"
        raise ConfigError(msg)


def _summary(job: BackfillJob, args: argparse.Namespace, processes: int, results: list[ShardProgress],
             seconds: float) -> dict[str, Any]:
    records = sum(r.records_read for r in results)
    return {
        "job_id": job.job_id,
        "checkpoint_scope": None if args.dry_run else job.scope,
        "project": job.project,
        "logstore": job.logstore,
        "from": args.start,
        "to": args.stop,
        "dry_run": args.dry_run,
        "processes": processes,
        "complete": all(r.complete for r in results),
        "log_groups": sum(r.log_groups_read for r in results),
        "records_read": records,
        "produced": sum(r.produced for r in results),
        "dead_lettered": sum(r.dead_lettered for r in results),
        "seconds": round(seconds, 3),
        "records_per_second": round(records / seconds, 1) if seconds > 0 else 0.0,
        "shards": [{k: v for k, v in asdict(r).items() if k != "started_at"} for r in results],
    }


class ProgressView:
    """One line per shard: redrawn in place on a terminal, logged every `every` seconds otherwise."""

    def __init__(self, stream: TextIO, tty: bool, every: float) -> None:
        self.stream = stream
        self.tty = tty
        self.every = every if not tty else 0.25
        self.shards: dict[int, ShardProgress] = {}
        self._drawn = 0
        self._last = 0.0

    def update(self, progress: ShardProgress) -> None:
        self.shards[progress.shard] = progress
        if time.monotonic() - self._last >= self.every:
            self._render()

    def close(self) -> None:
        self._render()

    def _render(self) -> None:
        self._last = time.monotonic()
        lines = [line(p) for _, p in sorted(self.shards.items())]
        if self.tty:
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self.stream.write(up + "".join(f"{text}\x1b[K\n" for text in lines))
            self.stream.flush()
            self._drawn = len(lines)
        else:
            for text in lines:
                log.info("%s", text)


def line(p: ShardProgress) -> str:
    """`shard 3 [#######-------------]  35.0%  700/2000 groups  70000 records  15000/s  ETA 0:00:09`."""
    fraction = p.log_groups_done / p.log_groups_total if p.log_groups_total else 1.0
    bar = "#" * round(20 * fraction) + "-" * (20 - round(20 * fraction))
    rate = p.records_read / p.seconds if p.seconds > 0 else 0.0
    if p.error:
        state = f"FAILED: {p.error}"
    elif p.complete:
        state = f"done in {p.seconds:.1f}s"
    else:
        group_rate = p.log_groups_read / p.seconds if p.seconds > 0 else 0.0
        left = p.log_groups_total - p.log_groups_done
        state = f"ETA {_clock(left / group_rate)}" if group_rate > 0 else "ETA -"
    return (f"shard {p.shard} [{bar}] {100 * fraction:5.1f}%  {p.log_groups_done}/{p.log_groups_total} groups  "
            f"{p.records_read} records  {rate:.0f}/s  {state}")


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
