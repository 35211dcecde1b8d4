"""Sizing the SLS trigger: which `triggerInterval` and FC `timeout` fit a shard's write rate.

Pure arithmetic, no I/O, so the numbers can be tested and reused by the `s.yaml` test. The model:

* The trigger invokes the function once per interval per shard that received data, with the records written in
  that interval: ``records = per_shard_rate * interval``.
* One invocation takes ``processing = records / throughput + overhead``, where `throughput` is what one
  invocation processes per second (the benchmark's figure) and `overhead` is the fixed part of every invocation.
* Keeping up: processing must take at most ``headroom`` of the interval, so a burst above the planned rate (or a
  slower instance) does not make the function fall behind.
* Catching up: when a shard lags more than 10 s the trigger invokes about every 2 s, each invocation still
  covering one interval of data, so a backlog drains at ``interval / max(2, processing)`` times real time; that must
  exceed 1. This assumes one shard's invocations run one after another, which the trigger does not document.
* Timeout: the processor stops ``margin`` seconds before the FC timeout, and an invocation must finish well inside
  it, so ``timeout >= safety * processing + margin``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The ranges FC documents for the SLS trigger's jobConfig.
TRIGGER_INTERVAL_RANGE = (3, 600)
FC_TIMEOUT_RANGE = (1, 86_400)

# The throughput every plan assumes unless told a measured one (`--throughput`): records/s of one invocation
# (pull, project, produce, confirm) against a *remote* broker, from a 1 GB FC instance. The benchmark's figure
# (tens of thousands, broker and emulator on the same machine) is an upper bound no deployment should be sized
# by; this one is about a sixteenth of it, so an unmeasured plan errs towards shorter windows and longer timeouts.
# s.yaml's comment and the README quote it; tests keep them in step.
DEFAULT_THROUGHPUT = 5_000.0
# The one wording of what a timeout above the minimum costs (plan's output, s.yaml, the README).
TIMEOUT_ADVICE = ("a longer timeout costs nothing while invocations succeed (FC bills the time used); an invocation "
                  "that hangs holds its shard that much longer before the trigger retries it")
# Per invocation, independent of its size: first PullLogs round trip, final Kafka flush, checkpoint write.
OVERHEAD_SECONDS = 1.0
# Processing may use at most this share of the interval: the function absorbs a 2x burst and drains a backlog.
HEADROOM = 0.5
# Timeout = SAFETY x expected processing (+ margin): room for SLS throttling backoff and Kafka retries.
TIMEOUT_SAFETY = 3.0
# processor.variables TIME_BUDGET_MARGIN_SECONDS default: the processor stops this long before the FC timeout.
MARGIN_SECONDS = 10.0
# The trigger's pace while catching up (about one invocation every ~2 s per shard).
CATCH_UP_PERIOD_SECONDS = 2.0
# Soft per-shard SLS write limit (indexed logstore) and the docs' "use a shorter interval" level.
SHARD_WRITE_LIMIT_BYTES = 5_000_000
SHORT_INTERVAL_ADVICE_BYTES = 1_000_000
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Workload:
    """What is planned for: a logstore's write rate spread evenly over its shards, and the measured throughput."""

    write_rate: float
    throughput: float
    shards: int = 1
    record_bytes: float = 130.0
    overhead_seconds: float = OVERHEAD_SECONDS
    headroom: float = HEADROOM
    timeout_safety: float = TIMEOUT_SAFETY
    margin_seconds: float = MARGIN_SECONDS

    @property
    def shard_rate(self) -> float:
        """Records per second arriving in one shard."""
        return self.write_rate / self.shards

    @property
    def shard_bytes_per_second(self) -> float:
        return self.shard_rate * self.record_bytes


@dataclass(frozen=True)
class IntervalFit:
    """One candidate `triggerInterval` for a workload, per shard unless named otherwise."""

    interval: int
    records: float
    processing_seconds: float
    busy: float
    timeout_seconds: int
    catch_up_speed: float
    invocations_per_day: float
    invocations_per_day_total: float
    fits: bool

    @property
    def freshness_seconds(self) -> float:
        """Worst-case age of a record when it reaches Kafka: it waits a whole interval, then one invocation."""
        return self.interval + self.processing_seconds


@dataclass(frozen=True)
class Plan:
    workload: Workload
    min_interval: int | None
    max_interval: int | None
    shards_needed: int

    @property
    def fits(self) -> bool:
        return self.min_interval is not None


def evaluate(workload: Workload, interval: int) -> IntervalFit:
    """The numbers for one interval, and whether it satisfies every constraint of the model above."""
    records = workload.shard_rate * interval
    processing = records / workload.throughput + workload.overhead_seconds
    busy = processing / interval
    timeout = math.ceil(workload.timeout_safety * processing + workload.margin_seconds)
    catch_up = interval / max(CATCH_UP_PERIOD_SECONDS, processing)
    per_day = SECONDS_PER_DAY / interval
    lo, hi = TRIGGER_INTERVAL_RANGE
    fits = (lo <= interval <= hi and busy <= workload.headroom and catch_up > 1
            and FC_TIMEOUT_RANGE[0] <= timeout <= FC_TIMEOUT_RANGE[1])
    return IntervalFit(interval, records, processing, busy, timeout, catch_up, per_day, per_day * workload.shards,
                       fits)


def plan(workload: Workload) -> Plan:
    """The range of intervals that fit (contiguous: `busy` falls and `timeout` grows with the interval)."""
    if workload.write_rate <= 0 or workload.throughput <= 0 or workload.shards < 1:
        msg = (f"write rate, throughput and shards must be positive, got {workload.write_rate}, "
               f"{workload.throughput}, {workload.shards}")
        raise ValueError(msg)
    lo, hi = TRIGGER_INTERVAL_RANGE
    fitting = [i for i in range(lo, hi + 1) if evaluate(workload, i).fits]
    return Plan(workload, fitting[0] if fitting else None, fitting[-1] if fitting else None,
                shards_needed(workload))


def shards_needed(workload: Workload) -> int:
    """Fewest shards for which some interval fits and no shard passes SLS's write limit.

    One number for both reasons, so every line of advice names the same count. The throughput's share is taken at
    the longest interval, where the overhead weighs least.
    """
    longest = TRIGGER_INTERVAL_RANGE[1]
    per_shard_capacity = workload.throughput * (workload.headroom - workload.overhead_seconds / longest)
    if per_shard_capacity <= 0:
        msg = f"overhead {workload.overhead_seconds} s leaves no room in a {longest} s interval"
        raise ValueError(msg)
    by_throughput = math.ceil(workload.write_rate / per_shard_capacity)
    by_write_limit = math.ceil(workload.write_rate * workload.record_bytes / SHARD_WRITE_LIMIT_BYTES)
    return max(1, by_throughput, by_write_limit)


def warnings(workload: Workload) -> list[str]:
    """Volume advice that the interval cannot fix."""
    rate = workload.shard_bytes_per_second
    notes = []
    if rate > SHARD_WRITE_LIMIT_BYTES:
        notes.append(f"{rate / 1e6:.1f} MB/s per shard is above SLS's 5 MB/s per-shard write limit: "
                     f"split the logstore into at least {shards_needed(workload)} shards")
    elif rate >= SHORT_INTERVAL_ADVICE_BYTES:
        notes.append(f"{rate / 1e6:.1f} MB/s per shard: Alibaba Cloud advises a short interval at 1 MB/s and above, "
                     "so each invocation handles a moderate amount of data")
    return notes
