"""`sls-kafka dev up|down|status|seed|mail`: run Kafka, the SLS emulator and an SMTP server locally in the
background, and read what the SMTP server received."""

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
from devstack.smtp import StoredMail, read_info, read_mail

EXIT_DOWN = 3
EXAMPLE_ENDPOINT = "cn-hangzhou.log.emulator"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``dev`` command and its subcommands; each parser sets ``func(args) -> int``."""
    dev = subparsers.add_parser(
        "dev",
        help="run a local Kafka broker, SLS emulator and SMTP server in the background",
        description="Start, stop and inspect a local stack: a real Kafka broker, the SLS emulator and an SMTP server.",
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
    up.add_argument("--smtp-port", type=int, default=2525,
                    help="SMTP port, plain with STARTTLS (default: %(default)s)")
    up.add_argument("--smtp-tls-port", type=int, default=2465,
                    help="SMTP port with implicit TLS, as 465 (default: %(default)s)")
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
    mail = sub.add_parser("mail", parents=[state], help="list the messages the SMTP server received, or print one")
    mail.add_argument("number", nargs="?", type=int, help="print message NUMBER (as listed) with its text part")
    mail.set_defaults(func=_mail)
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
        results = stack.up(args.state_dir, kafka_port=args.kafka_port, sls_port=args.sls_port,
                           smtp_port=args.smtp_port, smtp_tls_port=args.smtp_tls_port)
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


def _mail(args: argparse.Namespace) -> int:
    mails = read_mail(stack.smtp_state_dir(args.state_dir) / "mail")
    if args.number is None:
        if not mails:
            print(f"no mail in {stack.smtp_state_dir(args.state_dir) / 'mail'}")
        for number, mail in enumerate(mails, 1):
            date, subject = mail.message["Date"] or "(no date)", mail.message["Subject"]
            print(f"{number:>3}  {date}  {mail.mail_from} -> {', '.join(mail.rcpt_tos)}  {subject}")
        return 0
    if not 1 <= args.number <= len(mails):
        print(f"sls-kafka dev mail: error: no message {args.number}; there are {len(mails)} (see `dev mail`)",
              file=sys.stderr)
        return 1
    print_mail(mails[args.number - 1])
    return 0


def print_mail(mail: StoredMail, max_lines: int | None = None) -> None:
    """One message as `dev mail N` shows it: its headers, envelope, file and text part (its first `max_lines`)."""
    for header in ("Date", "From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To"):
        if header in mail.message:
            print(f"{header}: {mail.message[header]}")
    lines = mail.text().splitlines()
    text = "\n".join(lines[:max_lines])
    if max_lines is not None and len(lines) > max_lines:
        text += f"\n... ({len(lines) - max_lines} more lines in {mail.path.name})"
    print(f"Envelope: {mail.mail_from} -> {', '.join(mail.rcpt_tos)}\nFile: {mail.path}\n\n{text}")


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
    if (smtp := services.get(stack.SMTP)) and (info := read_info(Path(smtp.log).parent)):
        lines += [f"# SMTP on 127.0.0.1:{info['port']} (STARTTLS offered), implicit TLS on 127.0.0.1:"
                  f"{info['tls_port']}; certificate {info['cert']}; `sls-kafka dev mail` shows what it received"]
    return lines
