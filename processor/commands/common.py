"""Options and argument parsing shared by the commands that talk to a logstore (run, backfill, lag).

Flags fall back to environment variables and say so in `--help` (`[env: VAR]`). The variables here belong to
the command line only; what the function itself reads is listed in `processor.variables`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aliyun.log import LogClient

from common.cursors import cursor_position
from common.errors import ConfigError
from processor.config import Settings, json_object
from processor.credentials import Credentials, resolve_credentials
from processor.invocation_retry import StopFlag
from processor.sls.endpoint import check_endpoint
from processor.sls.shards import Logstore, Position
from processor.variables import BY_NAME

SLS_ENDPOINT = "SLS_ENDPOINT"
SLS_PROJECT = "SLS_PROJECT"
SLS_LOGSTORE = "SLS_LOGSTORE"
SLS_PROXY = "HTTP_PROXY"

log = logging.getLogger(__name__)

# Unix seconds past this are almost certainly milliseconds (it is the year 5138).
_MAX_UNIX_SECONDS = 10**11
_JOB_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class EnvDefault(argparse.Action):
    """A flag whose default comes from an environment variable (read when the parser is built)."""

    def __init__(self, env: str, required: bool = False, default: Any = None, help: str = "",
                 **kwargs: Any) -> None:
        if os.environ.get(env):
            default = os.environ[env]
            required = False
        super().__init__(default=default, required=required, help=f"{help} [env: {env}]", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)


def add_logstore_options(parser: argparse.ArgumentParser) -> None:
    """--endpoint/--project/--logstore/--sls-proxy; credentials come from ALIBABA_CLOUD_* variables."""
    g = parser.add_argument_group("SLS source (credentials: ALIBABA_CLOUD_ACCESS_KEY_ID, "
                                  "ALIBABA_CLOUD_ACCESS_KEY_SECRET, ALIBABA_CLOUD_SECURITY_TOKEN)")
    g.add_argument("--endpoint", action=EnvDefault, env=SLS_ENDPOINT, required=True,
                   help="SLS endpoint, e.g. cn-hangzhou.log.aliyuncs.com or cn-hangzhou.log.emulator")
    g.add_argument("--project", action=EnvDefault, env=SLS_PROJECT, required=True, help="SLS project")
    g.add_argument("--logstore", action=EnvDefault, env=SLS_LOGSTORE, required=True, help="SLS logstore")
    g.add_argument("--sls-proxy", action=EnvDefault, env=SLS_PROXY, metavar="URL",
                   help="HTTP proxy for SLS requests, e.g. http://127.0.0.1:8090 for `sls-kafka dev up`'s emulator")


@dataclass(frozen=True)
class LogstoreAccess:
    """Where a command reads from, and as whom."""

    endpoint: str
    project: str
    logstore: str
    credentials: Credentials

    def logstore_api(self) -> Logstore:
        c = self.credentials
        client = LogClient(self.endpoint, c.access_key_id, c.access_key_secret, c.security_token)
        return Logstore(client, self.project, self.logstore)


def access_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> LogstoreAccess:
    """Apply --sls-proxy, read the credentials and check the endpoint resolves, before SLS is contacted."""
    env = os.environ if env is None else env
    if args.sls_proxy:
        # requests reads the proxy from the environment on every call; lowercase wins when both are set.
        os.environ["HTTP_PROXY"] = os.environ["http_proxy"] = args.sls_proxy
    access = LogstoreAccess(args.endpoint, args.project, args.logstore, resolve_credentials(None, env))
    check_endpoint(access.endpoint, access.project)
    return access


def int_in_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            msg = f"{text!r} is not a whole number"
            raise argparse.ArgumentTypeError(msg) from None
        if not lo <= value <= hi:
            msg = f"{value} is out of range {lo}..{hi}"
            raise argparse.ArgumentTypeError(msg)
        return value

    parse.__name__ = f"integer {lo}..{hi}"
    return parse


def parse_shards(text: str) -> list[int] | None:
    """`0,1,3` or `all` (None); shard ids are checked against the logstore later."""
    if text.strip().lower() == "all":
        return None
    items = [item.strip() for item in text.split(",")]
    if not all(item.isdigit() for item in items):
        msg = f"{text!r} is not a shard list: give ids like 0,1,3 or 'all'"
        raise argparse.ArgumentTypeError(msg)
    return [int(item) for item in items]


def parse_position(text: str, flag: str, allow_cursor: bool = True) -> Position:
    """A cursor, unix seconds, an ISO-8601 time with a UTC offset, `begin` or `end`."""
    value = text.strip()
    if value.lower() in ("begin", "end"):
        return Position(value.lower(), value.lower(), text)  # type: ignore[arg-type]
    if value.isdigit():
        seconds = int(value)
        if seconds >= _MAX_UNIX_SECONDS:
            msg = f"{flag} {text}: unix time in seconds expected; this looks like milliseconds"
            raise ConfigError(msg)
        return Position("time", seconds, text)
    if re.match(r"^\d{4}-\d{2}-\d{2}", value):
        return Position("time", _iso_seconds(value, flag), text)
    # A cursor is base64 of a decimal number, so it never looks like a time: its first character is 'M'.
    if allow_cursor:
        try:
            cursor_position(value, flag)
        except ValueError:
            pass
        else:
            return Position("cursor", value, text)
    kinds = "a cursor, unix seconds" if allow_cursor else "unix seconds"
    msg = f"{flag} {text!r} is not {kinds}, an ISO-8601 time (e.g. 2024-05-01T08:00:00+08:00), begin or end"
    raise ConfigError(msg)


def _iso_seconds(value: str, flag: str) -> int:
    try:
        # Python 3.10 (the FC runtime) does not read a trailing Z.
        when = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        msg = f"{flag} {value!r} is not an ISO-8601 time, e.g. 2024-05-01T08:00:00+08:00 or 2024-05-01T00:00:00Z"
        raise ConfigError(msg) from None
    if when.tzinfo is None:
        # SLS users sit in many time zones; guessing one would shift a backfill by hours without a word.
        msg = f"{flag} {value!r} has no UTC offset: add one, e.g. {value}+08:00 or {value}Z"
        raise ConfigError(msg)
    return int(when.timestamp())


def check_order(start: Position, stop: Position) -> None:
    """Reject --to before --from where that is knowable without SLS (both times, or both cursors)."""
    if start.kind == stop.kind and start.kind in ("time", "cursor"):
        a, b = start.sort_key(), stop.sort_key()
        if a is not None and b is not None and b < a:
            msg = f"--to {stop.text} lies before --from {start.text}"
            raise ConfigError(msg)
    if stop.kind == "begin" and start.kind != "begin":
        msg = f"--to begin lies before --from {start.text}"
        raise ConfigError(msg)
    if start.kind == "end" and stop.kind != "end":
        msg = f"--from end lies after --to {stop.text}"
        raise ConfigError(msg)


def range_from_args(args: Any) -> tuple[Position, Position]:
    """The `--from`/`--to` range of a command, each parsed and their order checked."""
    start, stop = parse_position(args.start, "--from"), parse_position(args.stop, "--to")
    check_order(start, stop)
    return start, stop


def parse_parameter(text: str | None) -> dict[str, Any]:
    """--parameter: the trigger's functionParameter as a JSON object (validated by Settings.with_parameter)."""
    if not text:
        return {}
    return json_object(text, "--parameter", '{"topic": "other"}')


def check_job_id(text: str) -> str:
    """Job ids name checkpoint files and SLS consumer groups, so they keep to the narrower SLS alphabet."""
    if not _JOB_ID.match(text):
        msg = f"--job-id {text!r}: use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit"
        raise ConfigError(msg)
    return text


def settings_without_kafka(env: Mapping[str, str] | None = None) -> Settings:
    """Settings for commands that may not produce (dry runs, lag): Kafka placeholders where none are set.

    The placeholders are never connected to; when the checkpoints live in Kafka the real settings are required.
    """
    env = dict(os.environ if env is None else env)
    if env.get("DELIVERY_MODE", "").lower() != "exactly-once" and env.get("CHECKPOINT_STORE", "").lower() != "kafka":
        for name, placeholder in (("KAFKA_BOOTSTRAP_SERVERS", "unused:9092"), ("KAFKA_TOPIC", "unused")):
            if not any(env.get(n) for n in (name, *BY_NAME[name].aliases)):
                env[name] = placeholder
    return Settings.from_env(env)


def apply_log_level(settings: Settings, verbose: bool) -> None:
    """LOG_LEVEL, as the function applies it (processor.handler.initialize); -v still means debug."""
    logging.getLogger().setLevel(logging.DEBUG if verbose else settings.runtime.log_level)


@contextlib.contextmanager
def graceful_stop(stop: StopFlag, what: str) -> Iterator[None]:
    """First SIGINT/SIGTERM: set `stop` (finish `what`, then exit). Second: KeyboardInterrupt, abandoning it.

    Abandoning loses nothing either: checkpoints only move after Kafka confirmed the records before them.
    """

    received = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt
        stop.set()
        log.warning("%s received: finishing %s, then stopping (signal again to abandon it)",
                    signal.Signals(signum).name, what)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
