"""`sls-kafka invoke --event FILE`: run the FC handler once with a trigger event, print the summary."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import textwrap
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from checkpoints.base import CheckpointKey
from checkpoints.file import FileCheckpointStore
from checkpoints.sls_consumer_group import SlsConsumerGroupStore
from common.errors import ConfigError, EventError
from processor.credentials import Credentials, resolve_credentials
from processor.event import TriggerEvent
from processor.handler import function_timeout, handler, initialize
from processor.runtime import Runtime

# FC's longest function timeout (24 h), as INVOCATION_TIMEOUT_SECONDS allows.
MAX_TIMEOUT_SECONDS = 86_400

EVENT_EXAMPLE = """{
  "parameter": {},
  "source": {
    "endpoint": "cn-hangzhou-intranet.log.aliyuncs.com",
    "projectName": "my-project",
    "logstoreName": "driving-logs",
    "shardId": 0,
    "beginCursor": "MTcwMDAwMDAwMDAwMDAwMDAwMA==",
    "endCursor": "MTcwMDAwMDAwMDAwMDAwMDEyMA=="
  },
  "jobName": "7f3c...",
  "taskId": "c2d1...",
  "cursorTime": 1764662400
}"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "invoke", help="run the FC handler once with an SLS trigger event file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Run the handler exactly as FC would for one trigger event (the JSON the SLS trigger sends) and print "
            "its summary. Configuration comes from the environment, as on FC. The event delivers one shard's range "
            "[source.beginCursor, source.endCursor); `parameter` is the trigger's functionParameter; jobName, "
            "taskId and cursorTime are optional:") + "\n\n" + EVENT_EXAMPLE + "\n\n" + textwrap.fill(
            "`sls-kafka event --shard 0` prints such an event for a shard's current range. A range the function's "
            "checkpoint already covers is skipped (already_delivered); --scratch runs it under a checkpoint of its "
            "own instead."))
    p.add_argument("--event", required=True, type=Path, help="event JSON file, or - for standard input")
    p.add_argument("--timeout", type=float, default=None,
                   help="function timeout in seconds (as FC's context.function.timeout) [env: "
                   "INVOCATION_TIMEOUT_SECONDS]")
    p.add_argument("--scratch", action="store_true",
                   help="a test run: keep progress under a throw-away checkpoint scope (invoke-<random>), removed "
                   "afterwards, so the range is delivered again whatever the function's checkpoint says and that "
                   "checkpoint is neither read nor moved (the records do reach the topic)")
    p.set_defaults(func=run)


def load_event(path: Path) -> bytes:
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        msg = f"cannot read event file {path}: {exc.strerror or exc}"
        raise EventError(msg) from None
    TriggerEvent.from_json(raw)
    return raw


def check_timeout(timeout: float | None) -> None:
    """--timeout must be a real function timeout: the handler would ignore anything else and use the default."""
    if timeout is not None and not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT_SECONDS):
        msg = (f"--timeout {timeout:g}: give the function timeout in seconds, more than 0 and at most "
               f"{MAX_TIMEOUT_SECONDS}")
        raise ConfigError(msg)


def run(args: argparse.Namespace) -> int:
    check_timeout(args.timeout)
    raw = load_event(args.event)
    context = SimpleNamespace(function=SimpleNamespace(timeout=args.timeout), credentials=None,
                              request_id="local-invoke")
    summary = scratch_run(raw, context) if args.scratch else handler(raw, context)
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def scratch_run(raw: bytes, context: Any) -> dict[str, Any]:
    """The handler's run under a fresh scope, whose checkpoint is removed afterwards, whatever the outcome."""
    runtime = initialize(context)
    event = TriggerEvent.from_json(raw)
    scope = f"invoke-{uuid.uuid4().hex[:12]}"
    creds = resolve_credentials(context, os.environ)
    try:
        return {**runtime.process(event, creds, function_timeout(context), scope=scope).as_dict(),
                "checkpoint_scope": scope}
    finally:
        _drop_scope(runtime, event, scope, creds)


def _drop_scope(runtime: Runtime, event: TriggerEvent, scope: str, creds: Credentials) -> None:
    store = runtime.checkpoint_store(runtime.sls_client(event.endpoint, creds))
    if isinstance(store, SlsConsumerGroupStore):
        store.drop_scope(event.project, event.logstore, scope)
    elif runtime.settings.kafka.delivery_mode != "exactly-once" and isinstance(store, FileCheckpointStore):
        key = CheckpointKey(event.project, event.logstore, event.shard, scope)
        shutil.rmtree(store.path(key).parent, ignore_errors=True)
    # Exactly-once keeps the scope's one record in the compacted checkpoint topic, a key among the others.
