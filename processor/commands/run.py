"""`sls-kafka run`: the SLS log trigger as a long-running local process (see processor.trigger_runner)."""

from __future__ import annotations

import argparse
import threading
from typing import Any

from processor.commands.common import (
    EnvDefault,
    access_from_args,
    add_logstore_options,
    apply_log_level,
    graceful_stop,
    int_in_range,
    parse_parameter,
    parse_position,
)
from processor.runtime import Runtime
from processor.trigger_runner import STARTED_SCOPE, TRIGGER_SCOPE, RoundStats, TriggerConfig, TriggerRunner


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run", help="poll a logstore like the SLS trigger and run the handler for every new shard range",
        description="Do what the FC log trigger does, against any SLS endpoint: every interval, for every shard "
        "with new data (readonly parents until drained, new children as they appear), build the trigger's event "
        "for [last end cursor, current end cursor) and run the handler on it, retrying failures. Progress is kept "
        f"in the checkpoint store under the scope {TRIGGER_SCOPE!r}, and that it has run on the logstore under "
        f"{STARTED_SCOPE!r} (with CHECKPOINT_STORE=sls: the consumer group SLS_CONSUMER_GROUP-{STARTED_SCOPE}). "
        "Progress that retention overtook follows SLS_INVALID_CURSOR_POLICY; what could not be read is logged as "
        "a DATA GAP and counted in the round. SIGINT/SIGTERM finish the invocation in "
        "flight and stop; a second signal abandons it (nothing is lost: the next run resumes from the checkpoint). "
        "Kafka and checkpoint settings come from the environment, as for the function. On exit it prints its "
        "totals: records delivered, dead-lettered, and invocations that failed after their retries.")
    add_logstore_options(p)
    p.add_argument("--interval", action=EnvDefault, env="TRIGGER_INTERVAL", type=int_in_range(3, 600), default=60,
                   metavar="SECONDS",
                   help="seconds between polls, 3-600 (the trigger's jobConfig.triggerInterval; default 60)")
    p.add_argument("--max-retry", action=EnvDefault, env="MAX_RETRY_TIME", type=int_in_range(0, 100), default=3,
                   metavar="N",
                   help="retries of a failed invocation, with backoff, 0-100 (jobConfig.maxRetryTime; default 3)")
    p.add_argument("--start", default="end", metavar="begin|end|TIME",
                   help="where shards start on the first run on a logstore: end (default, new data only, like a "
                   "trigger without startTime), begin (all retained data) or a time (unix seconds or ISO-8601 with "
                   "offset, like sourceConfig.startTime); later runs continue from their progress, and shards "
                   "that appear later (a split's children) start from their beginning")
    p.add_argument("--parameter", metavar="JSON",
                   help="the trigger's functionParameter, e.g. '{\"topic\": \"other\"}'")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--once", action="store_const", const=1, dest="iterations",
                      help="poll once (catching up fully) and exit")
    stop.add_argument("--iterations", type=int_in_range(1, 10**9), metavar="N", help="poll N times and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    access = access_from_args(args)
    config = TriggerConfig(access.endpoint, access.project, access.logstore, interval=args.interval,
                           max_retry=args.max_retry, start=parse_position(args.start, "--start", allow_cursor=False),
                           parameter=parse_parameter(args.parameter))
    runtime = Runtime.from_env()
    apply_log_level(runtime.settings, args.verbose)
    runtime.settings.with_parameter(config.parameter)
    stop = threading.Event()
    try:
        with graceful_stop(stop, "the invocation in flight"):
            history = TriggerRunner(runtime, config, access.credentials, stop).run(args.iterations)
    finally:
        runtime.close()
    print(totals_line(history), flush=True)
    # Scripts driving `--once`/`--iterations` must see a failed invocation (it is retried next round anyway).
    return 1 if any(r.failed for r in history) else 0


def totals_line(history: list[RoundStats]) -> str:
    """What the whole run did, summed over its rounds (the log has each round's line)."""
    def total(name: str) -> int:
        return sum(getattr(r, name) for r in history)

    line = (f"sls-kafka run: {len(history)} round(s), {total('invocations')} invocation(s): "
            f"{total('produced')} delivered, {total('dead_lettered')} dead-lettered, "
            f"{total('failed')} failed (after retries)")
    if total("gaps"):
        line += f"; {total('gap_log_groups')} log group(s) lost to retention in {total('gaps')} gap(s)"
    return line
