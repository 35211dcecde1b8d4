"""`sls-kafka backfill`: replay a range of shards into Kafka (or print it with --dry-run), resumably."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any, TextIO

import orjson

from checkpoints.base import CheckpointKey
from checkpoints.sls_consumer_group import SlsConsumerGroupStore
from common.errors import ConfigError
from processor.backfill.fc_invoker import run_via_fc
from processor.backfill.jobs import JobManifests, JobRequest, bind_job
from processor.backfill.pool import run_parallel, shards_with_progress, stop_flag, workers_for
from processor.backfill.runs import (
    BackfillJob,
    ShardProgress,
    ShardRange,
    default_job_id,
    plan,
)
from processor.commands.backfill_fc import add_fc_options, checkpoint_reader, target_from_args
from processor.commands.backfill_view import progress_view
from processor.commands.common import (
    EnvDefault,
    LogstoreAccess,
    access_from_args,
    add_logstore_options,
    apply_log_level,
    check_job_id,
    graceful_stop,
    int_in_range,
    parse_parameter,
    parse_shards,
    range_from_args,
    settings_without_kafka,
)
from processor.config import Settings
from processor.sls.shards import ShardInfo, select_shards

log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_STOPPED = 3
EXIT_LOST = 4


def register(sub: Any) -> None:
    p = sub.add_parser(
        "backfill", help="replay a cursor or time range of some shards into Kafka, resumably",
        description="Replay [--from, --to) of the chosen shards through the same projection and sink as the "
        "function, shards in parallel worker processes. Each shard's range is cut into trigger-shaped events of at "
        "most --groups-per-event log groups. Progress is checkpointed under the job id: running the same command "
        "again continues where it stopped, over the ranges it resolved to at its first run (a later --to end does "
        "not extend it). The job id is bound to those ranges: a run asking for others under it is refused. "
        "SIGINT/SIGTERM finish the events in flight and stop; a second "
        "signal abandons them. Kafka and checkpoint settings come from the environment, as for the function. "
        f"Exit codes: 0 done (or the output of --dry-run closed by its reader, e.g. | head); {EXIT_FAILED} a shard "
        f"failed; {EXIT_STOPPED} stopped before the end (run the same command again to resume); {EXIT_LOST} log "
        "groups expired (SLS retention) before they were read: lost, counted in the summary's lost_log_groups.")
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
                   help="print the projected records (one JSON value per line) instead of producing, with a real run's "
                   "checks (dead letters, records over message.max.bytes); no checkpoints; the summary goes to stderr")
    p.add_argument("--progress-every", type=float, default=10.0, metavar="SECONDS",
                   help="when stderr is not a terminal (or rich, the cli extra, is not installed), log progress "
                   "this often (default 10)")
    add_fc_options(p)
    p.add_argument("--json", action="store_true",
                   help="end with the full summary as JSON (per shard, gaps included) instead of a few lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start, stop = range_from_args(args)
    parameter = parse_parameter(args.parameter)
    access = access_from_args(args)
    fc = target_from_args(args, access.credentials) if args.via_fc else None
    job_id = check_job_id(args.job_id) if args.job_id else default_job_id(
        access.project, access.logstore, start.text, stop.text, str(args.shards), orjson.dumps(parameter).decode())
    settings = settings_without_kafka() if args.dry_run else Settings.from_env()
    apply_log_level(settings, args.verbose)
    settings.with_parameter(parameter)
    logstore = access.logstore_api()

    def planned() -> list[ShardRange]:
        shards = select_shards(logstore.list_parts(), args.shards)
        if start.kind == "cursor" or stop.kind == "cursor":
            _require_one_shard(shards, args.shards)
        return plan(logstore, shards, start, stop)

    job = BackfillJob(access.endpoint, access.project, access.logstore, job_id, args.groups_per_event,
                      args.max_retry, parameter)
    manifests = JobManifests(settings.checkpoint.directory)
    # A dry run's stdout carries the records.
    out = sys.stderr if args.dry_run else sys.stdout
    if args.dry_run:
        ranges = planned()  # no checkpoints, so nothing to bind the range to
    else:
        ranges = bind_job(manifests, job, JobRequest.of(start, stop, args.shards, parameter), planned,
                          lambda rs: shards_with_progress(job, settings, rs, access.credentials))
        done = manifests.load(job.project, job.logstore, job.job_id)
        if done is not None and done.completed_at is not None:
            finished = [_already_done(job, r) for r in ranges]
            summary = {**_summary(job, args, 0, finished, 0.0), "already_complete": True,
                       "completed_at": _time_text(done.completed_at)}
            _report(out, summary, args.json)
            return 0
    workers = workers_for(ranges, args.processes or os.cpu_count() or 1)
    log.info("backfill job %s (checkpoint scope %s): shards %s, %d log groups, %d worker process(es)%s", job_id,
             job.scope, ",".join(str(r.shard) for r in ranges), sum(r.log_groups for r in ranges), workers,
             ", dry run" if args.dry_run else "")
    if not args.verbose:
        # Lines per event would bury the progress lines; -v brings them back.
        for name in ("processor.runtime", "processor.delivery"):
            logging.getLogger(name).setLevel(logging.WARNING)
    view = progress_view(sys.stderr, args.progress_every,
                         [ShardProgress(r.shard, r.log_groups, len(job.events(r))) for r in ranges])
    flag = stop_flag()
    started = time.monotonic()
    try:
        with graceful_stop(flag, "the events in flight"):
            if fc is not None:
                results = run_via_fc(job, ranges, fc, checkpoint_reader(settings, access), flag, view.update, view.tick)
            else:
                results = run_parallel(job, settings, ranges, access.credentials, workers, args.dry_run, flag,
                                       view.update, view.tick)
    finally:
        view.close()
    if any(r.output_closed for r in results):
        return 0  # the reader has what it asked for (`--dry-run | head`)
    if not args.dry_run and results and all(r.complete and not r.error for r in results):
        _finish_job(manifests, job, settings, access)
    summary = _summary(job, args, workers, results, time.monotonic() - started)
    _report(out, summary, args.json)
    if summary["failed_shards"]:
        return EXIT_FAILED
    if summary["lost_log_groups"]:
        return EXIT_LOST
    return 0 if summary["complete"] else EXIT_STOPPED


def _report(out: TextIO, summary: dict[str, Any], as_json: bool) -> None:
    text = orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() if as_json else human_summary(summary)
    out.write(text + "\n")
    out.flush()


def _already_done(job: BackfillJob, rng: ShardRange) -> ShardProgress:
    events = len(job.events(rng))
    return ShardProgress(rng.shard, rng.log_groups, events, log_groups_done=rng.log_groups, events_done=events,
                         events_skipped=events, complete=True)


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


def _summary(job: BackfillJob, args: argparse.Namespace, workers: int, results: list[ShardProgress],
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
        "processes": workers,
        "complete": all(r.complete for r in results),
        "already_complete": False,
        "log_groups_total": sum(r.log_groups_total for r in results),
        "log_groups_done": sum(r.log_groups_done for r in results),
        "log_groups": sum(r.log_groups_read for r in results),
        "lost_log_groups": sum(r.lost_log_groups for r in results),
        "records_read": records,
        "produced": sum(r.produced for r in results),
        "dead_lettered": sum(r.dead_lettered for r in results),
        "failed_shards": [r.shard for r in results if r.error],
        "seconds": round(seconds, 3),
        "records_per_second": round(records / seconds, 1) if seconds > 0 else 0.0,
        "shards": [r.as_dict() for r in results],
    }


def human_summary(summary: dict[str, Any]) -> str:
    """A few lines: what was done, what was lost or failed, and what to do next."""
    job = f"backfill job {summary['job_id']}" + (" (dry run)" if summary["dry_run"] else "")
    if summary["already_complete"]:
        return (f"{job} is already complete (finished {summary['completed_at']}): nothing to do. Data written since "
                "lies outside its ranges: another --job-id covers it.")
    state = "complete" if summary["complete"] else "stopped before its end"
    produced = "would produce" if summary["dry_run"] else "produced"
    lines = [f"{job} {state}: {summary['log_groups_done']}/{summary['log_groups_total']} log groups of "
             f"{len(summary['shards'])} shard(s) in {summary['seconds']:.1f}s; {summary['records_read']} records "
             f"read, {summary['produced']} {produced}, {summary['dead_lettered']} dead-lettered "
             f"({summary['records_per_second']:.0f} records/s, {summary['processes']} worker process(es))."]
    if summary["lost_log_groups"]:
        lost = [f"shard {s['shard']}: {s['lost_log_groups']}" for s in summary["shards"] if s["lost_log_groups"]]
        lines.append(f"LOST: {summary['lost_log_groups']} log groups expired (SLS retention) before they were read "
                     f"({', '.join(lost)}); they cannot be backfilled. Exit code {EXIT_LOST}.")
    lines.extend(f"shard {s['shard']} FAILED: {s['error']}" for s in summary["shards"] if s["error"])
    if not summary["complete"]:
        again = ("run the same command again" if summary["dry_run"] else
                 "run the same command again to resume: delivered events are not read again")
        lines.append(f"To finish, {again}.")
    return "\n".join(lines)


def _time_text(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(unix))
