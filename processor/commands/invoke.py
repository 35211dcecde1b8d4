"""`sls-kafka invoke --event FILE`: run the FC handler once with a trigger event, print the summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from processor.errors import EventError
from processor.event import TriggerEvent
from processor.handler import handler


def register(sub: Any) -> None:
    p = sub.add_parser("invoke", help="run the FC handler once with an SLS trigger event file",
                       description="Run the handler exactly as FC would for one trigger event (the JSON the SLS "
                       "trigger sends) and print its summary. Configuration comes from the environment, as on FC.")
    p.add_argument("--event", required=True, type=Path, help="event JSON file, or - for standard input")
    p.add_argument("--timeout", type=float, default=None,
                   help="function timeout in seconds (as FC's context.function.timeout) [env: "
                   "INVOCATION_TIMEOUT_SECONDS]")
    p.set_defaults(func=run)


def load_event(path: Path) -> bytes:
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        msg = f"cannot read event file {path}: {exc.strerror or exc}"
        raise EventError(msg) from None
    TriggerEvent.from_json(raw)
    return raw


def run(args: argparse.Namespace) -> int:
    raw = load_event(args.event)
    context = SimpleNamespace(function=SimpleNamespace(timeout=args.timeout), credentials=None,
                              request_id="local-invoke")
    summary = handler(raw, context)
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0



