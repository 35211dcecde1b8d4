"""`sls-kafka event --shard N`: print a ready SLS trigger event for a shard's current range (for `invoke`)."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

import orjson

from common.cursors import cursor_position
from common.errors import ConfigError
from processor.commands.common import (
    access_from_args,
    add_logstore_options,
    int_in_range,
    parse_parameter,
    range_from_args,
)
from processor.event import TriggerEvent


def register(sub: Any) -> None:
    p = sub.add_parser("event", help="print a trigger event for a shard's range, ready for `sls-kafka invoke`",
                       description="Print the JSON the SLS trigger would send for one shard's range [--from, --to) "
                       "(default: all the data the shard holds now), ready for `sls-kafka invoke --event -` or a "
                       "test event in the FC console.")
    add_logstore_options(p)
    p.add_argument("--shard", type=int_in_range(0, 10**6), required=True, metavar="N", help="the shard id")
    p.add_argument("--from", dest="start", default="begin", metavar="POS",
                   help="where the range begins: a cursor, unix seconds, an ISO time, begin (default) or end")
    p.add_argument("--to", dest="stop", default="end", metavar="POS",
                   help="where the range ends (exclusive): a cursor, unix seconds, an ISO time or end (default)")
    p.add_argument("--parameter", metavar="JSON", help="the trigger's functionParameter, e.g. '{\"topic\": \"t\"}'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start, stop = range_from_args(args)
    parameter = parse_parameter(args.parameter)
    access = access_from_args(args)
    logstore = access.logstore_api()
    shards = [part.shard for part in logstore.list_parts()]
    if args.shard not in shards:
        msg = f"--shard {args.shard}: the logstore has shards {', '.join(map(str, shards)) or 'none'}"
        raise ConfigError(msg)
    begin = logstore.resolve(args.shard, start, "--from")
    end = logstore.resolve(args.shard, stop, "--to")
    if cursor_position(end) < cursor_position(begin):
        msg = f"--to {args.stop} lies before --from {args.start} in shard {args.shard}"
        raise ConfigError(msg)
    cursor_time = logstore.last_time_before(args.shard, end) if cursor_position(begin) < cursor_position(end) else None
    event = TriggerEvent(access.endpoint, access.project, access.logstore, args.shard, begin, end, parameter,
                         "sls-kafka-event", str(uuid.uuid4()), cursor_time)
    sys.stdout.write(orjson.dumps(event.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
