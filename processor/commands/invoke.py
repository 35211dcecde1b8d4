"""`sls-kafka invoke --event FILE`: run the FC handler once with a trigger event, print the summary."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from common.errors import ConfigError, EventError
from processor.event import TriggerEvent
from processor.handler import handler

# FC's longest function timeout (24 h), as INVOCATION_TIMEOUT_SECONDS allows.
MAX_TIMEOUT_SECONDS = 86_400


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
    summary = handler(raw, context)
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
