"""`sls-kafka` (also `python -m processor`): one entry point, one module per command.

Each command module exposes `register(subparsers)`; a parser sets `func(args) -> int` (the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from common.errors import ProcessorError

# Command modules, in the order `--help` lists them; a module missing from an install is skipped.
COMMAND_MODULES = (
    "processor.commands.invoke",
    "processor.commands.event",
    "processor.commands.run",
    "processor.commands.backfill",
    "processor.commands.lag",
    "processor.commands.dlq",
    "processor.commands.plan",
    "processor.commands.package",
    "processor.commands.alerts",
    "devstack.demo",
    "devstack.cli",
)


def installed_version() -> str:
    """The installed distribution's version: pyproject.toml is the one place it is written."""
    try:
        return metadata.version("sls-kafka-processor")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sls-kafka",
        description="Deliver Alibaba Cloud Log Service (SLS) shard ranges to Kafka: run the FC handler locally, "
        "poll like the SLS trigger, backfill, and run a local stack (Kafka + SLS emulator).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


SECRET_VARIABLES = ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN", "KAFKA_SASL_PASSWORD")


def masked(text: str) -> str:
    """`text` with any credential from the environment replaced (SLS may echo a signed request back)."""
    for name in SECRET_VARIABLES:
        secret = os.environ.get(name, "")
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # A command that hands its options to another parser (the emulator) sets `takes_extra`.
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    except ProcessorError as exc:
        print(f"sls-kafka {args.command}: error: {masked(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sls-kafka {args.command}: interrupted", file=sys.stderr)
        return 130
