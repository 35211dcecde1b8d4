"""``python -m devstack.kafka fetch``: download the broker jars now (CI does this before the tests)."""

from __future__ import annotations

import argparse
import sys
import time

from devstack.kafka.jars import KafkaJarsError, fetch_jars, is_fetched, kafka_version


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m devstack.kafka")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="resolve the Kafka broker jars from Maven Central into the user cache")
    parser.parse_args(argv)
    cached = is_fetched()
    started = time.monotonic()
    try:
        lib = fetch_jars()
    except KafkaJarsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    how = "already cached" if cached else f"fetched in {time.monotonic() - started:.1f}s"
    print(f"Kafka {kafka_version()} jars {how}: {lib}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
