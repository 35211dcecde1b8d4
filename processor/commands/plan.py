"""`sls-kafka plan --write-rate N`: trigger intervals and FC timeout that fit a write rate (processor.planning)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from processor import planning

PROJECT_DIR = Path(__file__).resolve().parents[2]
BENCH_RESULT = PROJECT_DIR / "bench" / "results" / "latest.json"
# Intervals shown in the table (those that fit), plus the range's ends and the chosen interval.
SHOWN_INTERVALS = (3, 5, 10, 15, 30, 60, 120, 300, 600)
DEFAULT_INTERVAL = 60


@dataclass(frozen=True)
class Throughput:
    records_per_second: float
    source: str


def benchmark_throughput(path: Path = BENCH_RESULT) -> Throughput:
    """The benchmark's at-least-once records/s, else the planning default (with the reason, for the output)."""
    try:
        doc = json.loads(path.read_text())
        value = float(doc["at_least_once"]["records_per_second"])
    except FileNotFoundError:
        reason = f"no benchmark result at {path}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = f"benchmark result {path} unreadable ({type(exc).__name__}: {exc})"
    else:
        if value > 0:
            return Throughput(value, f"benchmark, {path}")
        reason = f"benchmark result {path} has records_per_second={value}"
    return Throughput(planning.DEFAULT_THROUGHPUT, f"default; {reason}")


def planning_throughput(measured: float | None) -> Throughput:
    """What a plan assumes: a measured --throughput, else the conservative default for a remote broker.

    The benchmark ran with its broker on the same machine: it is quoted as an upper bound, never planned with.
    """
    if measured is not None:
        return Throughput(measured, "--throughput")
    bench = benchmark_throughput()
    seen = (f"; the benchmark measured {bench.records_per_second:,.0f} with its broker on the same machine, an "
            "upper bound" if bench.source.startswith("benchmark") else "")
    return Throughput(planning.DEFAULT_THROUGHPUT, "default for a remote broker: measure yours and pass "
                      f"--throughput{seen}")


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            msg = f"{text!r} is not a {'whole ' if kind is int else ''}number"
            raise argparse.ArgumentTypeError(msg) from None
        if not math.isfinite(value) or value <= 0:
            msg = f"{text} must be a finite number greater than 0"
            raise argparse.ArgumentTypeError(msg)
        return value
    return parse


def register(sub: Any) -> None:
    p = sub.add_parser("plan", help="choose the SLS trigger interval and FC timeout for a write rate",
                       description="Print the trigger intervals (jobConfig.triggerInterval) and the FC function "
                       "timeout that fit a logstore's write rate: records per invocation = shard write rate x "
                       "interval; an invocation must finish within half the interval and well inside the timeout "
                       "at the measured throughput. Shorter intervals: fresher data, more invocations.")
    p.add_argument("--write-rate", required=True, type=_positive(float), metavar="RECORDS_PER_S",
                   help="records written per second to the logstore (all shards together)")
    p.add_argument("--shards", type=_positive(int), default=1, help="shards the rate is spread over (default: 1, "
                   "i.e. --write-rate is one shard's rate)")
    p.add_argument("--record-bytes", type=_positive(float), default=130.0,
                   help="average size of one record in bytes (default: 130)")
    p.add_argument("--throughput", type=_positive(float), default=None, metavar="R",
                   help="records/s one invocation of your deployment processes, measured (the summary's "
                   f"records_read / duration_seconds) (default: {planning.DEFAULT_THROUGHPUT:.0f}, conservative for a "
                   "remote broker)")
    p.add_argument("--interval", type=_positive(int), default=None,
                   help=f"the interval you intend to use (default: {DEFAULT_INTERVAL}, moved into the range)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    throughput = planning_throughput(args.throughput)
    workload = planning.Workload(write_rate=args.write_rate, throughput=throughput.records_per_second,
                                 shards=args.shards, record_bytes=args.record_bytes)
    try:
        result = planning.plan(workload)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    sys.stdout.write(render(result, throughput, args.interval))
    return 0 if result.fits else 1


def render(result: planning.Plan, throughput: Throughput, interval: int | None) -> str:
    w = result.workload
    lines = [
        f"workload:   {w.write_rate:,.0f} records/s over {w.shards} shard(s) = {w.shard_rate:,.0f} records/s per "
        f"shard, {w.shard_bytes_per_second / 1024:,.0f} KiB/s per shard at {w.record_bytes:g} bytes/record",
        f"throughput: {throughput.records_per_second:,.0f} records/s per invocation ({throughput.source})",
    ]
    lines += [f"note:       {note}" for note in planning.warnings(w)]
    if result.min_interval is None or result.max_interval is None:
        lines.append(f"no trigger interval fits: one shard needs {w.shard_rate / w.throughput:.0%} of an invocation's "
                     f"throughput, the limit is {w.headroom:.0%}. Split the logstore into at least "
                     f"{result.shards_needed} shards, or measure the function's throughput and pass it as "
                     "--throughput.")
        return "\n".join(lines) + "\n"
    lo, hi = result.min_interval, result.max_interval
    chosen = min(max(interval or DEFAULT_INTERVAL, lo), hi)
    pick = planning.evaluate(w, chosen)
    widest = planning.evaluate(w, hi)
    lines += [
        "",
        f"triggerInterval that fits: {lo}-{hi} s (documented range {planning.TRIGGER_INTERVAL_RANGE[0]}-"
        f"{planning.TRIGGER_INTERVAL_RANGE[1]})",
        f"FC timeout that fits every interval in that range: >= {widest.timeout_seconds} s",
        "",
        _table(w, sorted({lo, hi, chosen, *(i for i in SHOWN_INTERVALS if lo <= i <= hi)})),
        f"busy: share of the interval one invocation takes (at most {w.headroom:.0%}); catch-up: seconds of data "
        "delivered per second while behind (above 1x a backlog shrinks); inv/day: shards that keep receiving data",
        "",
        f"s.yaml for a {chosen} s interval ({pick.records:,.0f} records per invocation, data at most "
        f"~{pick.freshness_seconds:.0f} s old in Kafka, {pick.invocations_per_day_total:,.0f} invocations/day):",
        f"  vars.triggerInterval: {chosen}",
        f"  vars.timeout: {pick.timeout_seconds}        # the minimum: {planning.TIMEOUT_ADVICE}",
        f"  INVOCATION_TIMEOUT_SECONDS: \"{pick.timeout_seconds}\"   # keep equal to the timeout",
    ]
    return "\n".join(lines) + "\n"


def _table(w: planning.Workload, intervals: list[int]) -> str:
    header = (f"{'interval':>8}  {'records/inv':>11}  {'processing':>10}  {'busy':>5}  {'timeout>=':>9}  "
              f"{'catch-up':>8}  {'inv/day/shard':>13}  {'inv/day':>9}")
    rows = [header]
    for i in intervals:
        f = planning.evaluate(w, i)
        rows.append(f"{i:>6} s  {f.records:>11,.0f}  {f.processing_seconds:>8.1f} s  {f.busy:>5.0%}  "
                    f"{f.timeout_seconds:>7} s  {f.catch_up_speed:>7.1f}x  {f.invocations_per_day:>13,.0f}  "
                    f"{f.invocations_per_day_total:>9,.0f}")
    return "\n".join(rows)
