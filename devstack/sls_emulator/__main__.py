"""Run the SLS emulator in the foreground: ``python -m devstack.sls_emulator [--port 8090] ...``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from .server import EmulatorServer


def _access_key(value: str) -> tuple[str, str]:
    key_id, sep, secret = value.partition(":")
    if not sep or not key_id or not secret:
        msg = f"expected ID:SECRET, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return key_id, secret


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port to bind; 0 picks a free one (default 8090)")
    parser.add_argument("--data-dir", help="persist state here so it survives a restart (default: memory only)")
    parser.add_argument(
        "--access-key",
        action="append",
        type=_access_key,
        default=[],
        metavar="ID:SECRET",
        help="accepted access key; repeatable. With none, signatures are not checked",
    )
    parser.add_argument("--region", default="cn-hangzhou", help="region reported by GetProject")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m devstack.sls_emulator") -> int:
    """Serve until SIGTERM or SIGINT."""
    args = _parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")
    credentials = dict(args.access_key) or None
    server = EmulatorServer(args.host, args.port, args.data_dir, credentials, args.region).start()
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    print(f"SLS emulator listening on {server.url}", flush=True)
    print(f"  set HTTP_PROXY={server.proxy_url} and use any endpoint, e.g. cn-hangzhou.log.emulator", flush=True)
    print(f"  signatures: {'checked' if credentials else 'not checked'}; data dir: {args.data_dir or '-'}", flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
