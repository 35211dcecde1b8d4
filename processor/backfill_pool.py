"""Backfill shards in parallel: one pool worker process per shard at a time, progress reported to the parent."""

from __future__ import annotations

import multiprocessing
import queue
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from processor.backfill import BackfillJob, DryRunInvoker, Invoker, LocalInvoker, ShardProgress, ShardRange, run_shard
from processor.config import Settings
from processor.credentials import Credentials
from processor.poller import StopFlag
from processor.runtime import Runtime

# fork: workers inherit the logging set-up and need no re-import (spawn would re-run `python -m processor`);
# the parent has no Kafka producer and no threads when the pool starts.
_MP = multiprocessing.get_context("fork")

# Set in each pool worker by `_init_worker`; a worker keeps its Runtime (and producer) across shards.
_worker: dict[str, Any] = {}


def stop_flag() -> StopFlag:
    """A stop flag the pool's workers see."""
    return _MP.Event()


def _init_worker(job: BackfillJob, settings: Settings, credentials: Credentials, dry_run: bool, stop: StopFlag,
                 updates: Any, out_lock: Any) -> None:
    # The parent decides between finishing and abandoning; pool.terminate() must still kill.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    runtime = Runtime(settings)
    invoker: Invoker = (DryRunInvoker(runtime, credentials, sys.stdout.buffer, out_lock) if dry_run
                        else LocalInvoker(runtime, credentials, job.scope))
    _worker.update(job=job, invoker=invoker, stop=stop, updates=updates)


def _run_shard_in_worker(rng: ShardRange) -> ShardProgress:
    w = _worker
    return run_shard(w["job"], rng, w["invoker"], w["stop"], w["updates"].put)


def run_parallel(job: BackfillJob, settings: Settings, ranges: Sequence[ShardRange], credentials: Credentials,
                 processes: int, dry_run: bool, stop: StopFlag,
                 on_progress: Callable[[ShardProgress], None]) -> list[ShardProgress]:
    """Run every shard in a pool of `processes` workers; `on_progress` sees the workers' reports here.

    `stop` (from `stop_flag()`) lets every worker finish its current event and return. KeyboardInterrupt (a
    second signal) terminates the workers instead, which loses nothing either: see the pipeline's commit order.
    """
    updates = _MP.Queue()
    pool = _MP.Pool(processes, _init_worker, (job, settings, credentials, dry_run, stop, updates, _MP.Lock()))
    try:
        pending = [pool.apply_async(_run_shard_in_worker, (rng,)) for rng in ranges]
        while not all(r.ready() for r in pending):
            _drain(updates, on_progress, timeout=0.2)
        results = [r.get() for r in pending]
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.close()
        pool.join()
    # A worker's last queued report can trail its result; the result is the final word.
    for result in results:
        on_progress(result)
    return results


def _drain(updates: Any, on_progress: Callable[[ShardProgress], None], timeout: float) -> None:
    try:
        on_progress(updates.get(timeout=timeout))
        while True:
            on_progress(updates.get_nowait())
    except queue.Empty:
        pass
