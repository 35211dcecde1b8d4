"""Run one method in this (fresh) process and print its measurements as JSON: `python -m bench.worker < spec.json`.

A process per method keeps their peak RSS, CPU time and heap state apart. CPU seconds are the process's
(user + system, every thread: librdkafka's included) over the timed part; peak RSS is the process's VmHWM
(not `ru_maxrss`, which keeps the high-water mark of the parent the worker was forked from).
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from bench import methods, stages
from bench.methods import Outcome, Spec

METHODS: dict[str, Callable[[Spec], Outcome]] = {
    "lesson": methods.lesson,
    "naive": methods.naive,
    "naive_layout": methods.naive_layout,
    "at_least_once": methods.ours,
    "exactly_once": methods.ours,
    "stages": stages.breakdown,
    "small_at_least_once": methods.small_ranges,
    "small_exactly_once": methods.small_ranges,
}
# Run before the clock: an FC instance starts once (the cold start, measured apart) for many invocations.
STARTS: dict[str, Callable[[Spec], None]] = {
    "at_least_once": methods.start_at_least_once,
    "exactly_once": methods.start_exactly_once,
    "stages": methods.start_at_least_once,
    "small_at_least_once": methods.start_at_least_once,
    "small_exactly_once": methods.start_exactly_once,
}


class RssSampler:
    """Resident set size every `interval` seconds, to show whether memory grows along a range."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with open("/proc/self/statm") as statm:
            while not self._stop.wait(self.interval):
                statm.seek(0)
                rss_mb = int(statm.read().split()[1]) * resource.getpagesize() / 2**20
                self.samples.append((time.perf_counter() - self._started, rss_mb))

    def quarters(self) -> list[float]:
        """Peak RSS (MB) in each quarter of the run: flat means memory does not grow with the range."""
        if not self.samples:
            return []
        end = self.samples[-1][0]
        peaks = [0.0] * 4
        for at, rss in self.samples:
            q = min(3, int(4 * at / end)) if end else 0
            peaks[q] = max(peaks[q], rss)
        return [round(p, 1) for p in peaks]


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    msg = "no VmHWM in /proc/self/status"
    raise RuntimeError(msg)


def measure(method: Callable[[Spec], Outcome], spec: Spec) -> dict[str, Any]:
    with RssSampler() as sampler:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        outcome = method(spec)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "method": spec.method,
        "records": outcome.records,
        "raw_bytes": outcome.raw_bytes,
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        # What FC bills: CPU time (vCPU-seconds) per million records delivered.
        "cpu_seconds_per_million": round(cpu / outcome.records * 1e6, 2) if outcome.records else None,
        "records_per_second": round(outcome.records / wall, 1),
        "mb_per_second": round(outcome.raw_bytes / 1e6 / wall, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_quarters_mb": sampler.quarters(),
        **outcome.details,
    }


def main() -> None:
    spec = Spec(**json.load(sys.stdin))
    if spec.method in STARTS:
        STARTS[spec.method](spec)
    result = measure(METHODS[spec.method], spec)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
