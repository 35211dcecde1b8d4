"""`sls-kafka lag`: per shard, how far a checkpoint is behind the newest data, in seconds and log groups."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import Any

import orjson

from checkpoints.base import CheckpointKey, position
from common.cursors import cursor_position
from processor.commands.common import access_from_args, add_logstore_options, parse_shards, settings_without_kafka
from processor.runtime import Runtime
from processor.sls.shards import Logstore, ShardInfo, select_shards
from processor.trigger_runner import TRIGGER_SCOPE, trigger_progress_store


def register(sub: Any) -> None:
    p = sub.add_parser(
        "lag", help="show per shard how far a checkpoint is behind the newest data",
        description="For every shard: the receive time of the newest log group (end time), the receive time of "
        "the newest log group the checkpoint has delivered (checkpoint time), and the lag between them in seconds "
        "and in log groups. A shard that is caught up has lag 0. Checkpoint settings come from the environment "
        "(CHECKPOINT_STORE, CHECKPOINT_DIR, ...), as for the function.")
    add_logstore_options(p)
    p.add_argument("--scope", default="",
                   help=f"checkpoint scope: empty for the function's (default), {TRIGGER_SCOPE} for the progress "
                   "of `run`, backfill-<job id> for a backfill job")
    p.add_argument("--shards", type=parse_shards, default=None, metavar="IDS", help="shard ids or all (default)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    access = access_from_args(args)
    runtime = Runtime(settings_without_kafka())
    client = runtime.sls_client(access.endpoint, access.credentials)
    logstore = Logstore(client, access.project, access.logstore)
    runner = args.scope == TRIGGER_SCOPE
    store = trigger_progress_store(runtime, client) if runner else runtime.checkpoint_reader(client)
    rows = []
    for shard in select_shards(logstore.list_parts(), args.shards):
        saved = store.load(CheckpointKey(access.project, access.logstore, shard.shard, args.scope))
        rows.append(shard_lag(logstore, shard, None if saved is None else saved.cursor))
    if args.json:
        sys.stdout.write(orjson.dumps({"scope": args.scope, "shards": rows}, option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        sys.stdout.write(table(rows))
    return 0


def shard_lag(logstore: Logstore, shard: ShardInfo, checkpoint: str | None) -> dict[str, Any]:
    """End time: receive time of the newest log group. Checkpoint time: of the newest one delivered.

    With no delivered group left in the retained data (checkpoint at or before the oldest one), the lag in
    seconds is counted from the oldest retained group: a lower bound.
    """
    begin, end = logstore.cursor(shard.shard, "begin"), logstore.cursor(shard.shard, "end")
    begin_pos, end_pos = cursor_position(begin), cursor_position(end)
    end_time = logstore.last_time_before(shard.shard, end) if end_pos > begin_pos else None
    row: dict[str, Any] = {"shard": shard.shard, "status": shard.status, "end_cursor": end, "end_time": end_time,
                           "checkpoint": checkpoint, "checkpoint_time": None, "lag_seconds": None,
                           "lag_log_groups": None, "note": ""}
    if checkpoint is None:
        row["note"] = "no checkpoint"
        return row
    pos = position(checkpoint)
    row["lag_log_groups"] = max(0, end_pos - pos)
    if end_time is None:
        row["lag_seconds"] = 0
    elif pos > begin_pos:
        row["checkpoint_time"] = logstore.last_time_before(shard.shard, checkpoint)
        row["lag_seconds"] = end_time - row["checkpoint_time"]
    else:
        row["note"] = "checkpoint's data expired" if pos < begin_pos else "nothing delivered yet"
        row["lag_seconds"] = end_time - logstore.group_time(shard.shard, begin)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = ("shard", "status", "end time (UTC)", "checkpoint time (UTC)", "lag s", "lag groups", "note")
    body = [(str(r["shard"]), r["status"], _time(r["end_time"]), _time(r["checkpoint_time"]), _num(r["lag_seconds"]),
             _num(r["lag_log_groups"]), r["note"]) for r in rows]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
                   for row in (head, *body))


def _time(unix: int | None) -> str:
    return "-" if unix is None else datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)
