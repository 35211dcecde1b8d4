"""`sls-kafka dev up|down|status`: run Kafka and the SLS emulator locally in the background."""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path
from typing import Any

from aliyun.log import LogClient

from devstack import stack
from devstack.fc import cli as fc_cli
from devstack.kafka import KafkaBrokerError, KafkaJarsError
from devstack.sample_data import ensure_logstore, write_driving_logs
from devstack.sls_emulator.__main__ import main as emulator_main

EXIT_DOWN = 3
EXAMPLE_ENDPOINT = "cn-hangzhou.log.emulator"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``dev`` command and its subcommands; each parser sets ``func(args) -> int``."""
    dev = subparsers.add_parser(
        "dev",
        help="run a local Kafka broker and SLS emulator in the background",
        description="Start, stop and inspect a local stack: a real Kafka broker and the SLS emulator.",
    )
    dev.set_defaults(func=lambda _args: _usage(dev))
    sub = dev.add_subparsers(dest="dev_command", metavar="SUBCOMMAND")
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--state-dir",
        type=Path,
        default=stack.default_state_dir(),
        help="where pids, ports, logs and the services' data live (default: %(default)s)",
    )
    up = sub.add_parser("up", parents=[state], help="start whatever is not running yet and wait for it")
    up.add_argument("--kafka-port", type=int, default=9092, help="Kafka client port (default: %(default)s)")
    up.add_argument("--sls-port", type=int, default=8090, help="SLS emulator port (default: %(default)s)")
    up.set_defaults(func=_up)
    sub.add_parser("down", parents=[state], help="stop what `dev up` started").set_defaults(func=_down)
    sub.add_parser(
        "status", parents=[state], help=f"show what runs; exit 0 when all is up, {EXIT_DOWN} otherwise"
    ).set_defaults(func=_status)
    seed = sub.add_parser("seed", parents=[state],
                          help="write sample driving logs (lesson lines, vehicles, poison) into the running emulator")
    seed.add_argument("--project", default="demo", help="project, created if missing (default: %(default)s)")
    seed.add_argument("--logstore", default="driving", help="logstore, created if missing (default: %(default)s)")
    seed.add_argument("--shards", type=int, default=4, help="shards of a new logstore (default: %(default)s)")
    seed.add_argument("--records", type=int, default=10_000, help="vehicle records to write (default: %(default)s)")
    seed.set_defaults(func=_seed)
    fc_cli.register(sub, state)
    # The emulator parses its own options (see devstack.sls_emulator.__main__), so --help shows them.
    emulator = subparsers.add_parser(
        "emulator", add_help=False, help="run the SLS emulator alone in the foreground (--help for its options)"
    )
    emulator.set_defaults(func=lambda args: emulator_main(args.extra, prog="sls-kafka emulator"), takes_extra=True)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _up(args: argparse.Namespace) -> int:
    try:
        results = stack.up(args.state_dir, kafka_port=args.kafka_port, sls_port=args.sls_port)
    except (stack.StackError, KafkaBrokerError, KafkaJarsError) as exc:
        print(f"sls-kafka dev up: error: {exc}", file=sys.stderr)
        return 1
    for result in results:
        verb = "started" if result.started else "already running"
        print(f"{result.service.name}: {verb} (pid {result.service.pid}, log {result.service.log})")
    _print_access({r.service.name: r.service for r in results})
    return 0


def _down(args: argparse.Namespace) -> int:
    if fc_cli.stop(args.state_dir):
        print("fc: the local cloud stopped")
    stopped = stack.down(args.state_dir)
    if not stopped:
        print(f"nothing recorded in {args.state_dir}: the dev stack was not running")
    for service, was_running in stopped:
        print(f"{service.name}: {'stopped' if was_running else 'was not running'} (pid {service.pid})")
    return 0


def _status(args: argparse.Namespace) -> int:
    services = stack.status(args.state_dir)
    for name, service in services.items():
        print(f"{name}: " + (f"running (pid {service.pid}, port {service.port})" if service else "not running"))
    running = {name: svc for name, svc in services.items() if svc is not None}
    _print_access(running)
    return 0 if len(running) == len(services) else EXIT_DOWN


def _seed(args: argparse.Namespace) -> int:
    sls = stack.status(args.state_dir)[stack.SLS]
    if sls is None:
        print("sls-kafka dev seed: error: the emulator is not running; start it with `sls-kafka dev up`",
              file=sys.stderr)
        return 1
    proxy = f"http://127.0.0.1:{sls.port}"
    os.environ["HTTP_PROXY"] = os.environ["http_proxy"] = proxy
    client = LogClient(EXAMPLE_ENDPOINT, "dev", "dev")
    ensure_logstore(client, args.project, args.logstore, args.shards)
    written = write_driving_logs(client, args.project, args.logstore, args.records, random.Random())
    print(f"wrote {written.logs} logs ({written.poison} poison) to {args.project}/{args.logstore} "
          f"at {EXAMPLE_ENDPOINT} (HTTP_PROXY={proxy})")
    return 0


def _print_access(services: dict[str, stack.Service]) -> None:
    lines = access_lines(services)
    if lines:
        print("\n" + "\n".join(lines))


def access_lines(services: dict[str, stack.Service]) -> list[str]:
    """What to export to use the running services: the emulator is an HTTP proxy for any endpoint name.

    Its address is no endpoint: the SDK puts the project in front of the endpoint's host (`demo.127.0.0.1`).
    """
    lines = []
    if sls := services.get(stack.SLS):
        lines += [f"# SLS emulator on 127.0.0.1:{sls.port}, reached as an HTTP proxy under any endpoint name:",
                  f"export HTTP_PROXY=http://127.0.0.1:{sls.port}",
                  f"export SLS_ENDPOINT={EXAMPLE_ENDPOINT}"]
    if kafka := services.get(stack.KAFKA):
        lines += [f"export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{kafka.port}"]
    return lines
