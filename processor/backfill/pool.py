"""Backfill shards in parallel worker processes, each taking one shard at a time and reporting as its pages go.

Stopping: SIGINT or SIGTERM to the parent, or to the whole process group as a service manager sends it, lets every
worker finish its event in flight and return (workers ignore SIGINT, which a terminal sends to the whole group,
and treat SIGTERM like the parent does). A second signal abandons: the parent kills the workers, which loses
nothing either, since a checkpoint only moves after Kafka confirmed every record before it.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import queue
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from checkpoints.base import CheckpointKey
from common.errors import CheckpointError, ProcessorError
from processor.backfill.runs import (
    BackfillJob,
    DryRunInvoker,
    Invoker,
    LocalInvoker,
    PageProgress,
    ShardProgress,
    ShardRange,
    run_shard,
)
from processor.config import Settings
from processor.credentials import Credentials
from processor.invocation_retry import StopFlag
from processor.runtime import Runtime

# fork: workers inherit the logging set-up and need no re-import (spawn would re-run `python -m processor`'s
# __main__); the parent has no Kafka producer and no threads when the workers start.
_MP = multiprocessing.get_context("fork")


def stop_flag() -> StopFlag:
    """A stop flag the workers see."""
    return _MP.Event()


def shards_with_progress(job: BackfillJob, settings: Settings, ranges: Sequence[ShardRange],
                         credentials: Credentials, timeout: float = 120.0) -> list[int]:
    """The shards of `ranges` whose checkpoint store already holds progress in the job's scope.

    Read in a short-lived worker process: a Kafka client (the `kafka` store) made here would leave its
    threads in the parent that later forks the backfill workers.
    """
    answer = _MP.Queue()
    probe = _MP.Process(target=_probe, args=(job, settings, credentials, [r.shard for r in ranges], answer),
                        name="backfill-probe", daemon=True)
    sys.stdout.flush()
    sys.stderr.flush()
    probe.start()
    try:
        outcome = answer.get(timeout=timeout)
    except queue.Empty:
        msg = (f"reading the checkpoints of backfill job {job.job_id!r} ({settings.checkpoint.store} store) did not "
               f"finish within {timeout:.0f}s (probe exit code {probe.exitcode})")
        raise CheckpointError(msg) from None
    finally:
        probe.kill()
        probe.join()
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _probe(job: BackfillJob, settings: Settings, credentials: Credentials, shards: list[int], answer: Any) -> None:
    runtime = Runtime(settings)
    try:
        store = runtime.checkpoint_reader(runtime.sls_client(job.endpoint, credentials))
        answer.put([s for s in shards if store.load(CheckpointKey(job.project, job.logstore, s, job.scope))])
    except ProcessorError as exc:
        answer.put(exc)
    except Exception as exc:  # e.g. an SDK error, which may not survive pickling: its text is what matters
        answer.put(CheckpointError(f"reading the checkpoints of backfill job {job.job_id!r}: {exc!r}"))
    finally:
        runtime.close(1)


def workers_for(ranges: Sequence[ShardRange], processes: int) -> int:
    """The worker processes `run_parallel` starts: no more than there are shards."""
    return min(processes, len(ranges))


def run_parallel(job: BackfillJob, settings: Settings, ranges: Sequence[ShardRange], credentials: Credentials,
                 processes: int, dry_run: bool, stop: StopFlag, on_progress: Callable[[ShardProgress], None],
                 on_tick: Callable[[], None] = lambda: None) -> list[ShardProgress]:
    """Backfill `ranges` in `workers_for(ranges, processes)` workers; returns each shard's final progress, in the
    order of `ranges`.

    `on_progress` runs here, in the parent, for every report; `on_tick` at least every 0.2 s, reports or not.
    `stop` must come from `stop_flag()`.
    """
    tasks, updates, logs, out_lock = _MP.Queue(), _MP.Queue(), _MP.Queue(), _MP.Lock()
    for rng in ranges:
        tasks.put(rng)
    workers = [_MP.Process(target=_worker,
                           args=(job, settings, credentials, dry_run, stop, tasks, updates, logs, out_lock),
                           name=f"backfill-{i}", daemon=True) for i in range(workers_for(ranges, processes))]
    for _ in workers:
        tasks.put(None)
    final: dict[int, ShardProgress] = {}
    # Whatever sits in these buffers at fork time would be written once by every process.
    sys.stdout.flush()
    sys.stderr.flush()
    for w in workers:
        w.start()
    try:
        while len(final) < len(ranges):
            _relay(logs)
            on_tick()
            try:
                is_final, progress = updates.get(timeout=0.2)
            except queue.Empty:
                if all(w.exitcode is not None for w in workers):
                    _mark_lost(ranges, final, workers)
                continue
            if is_final:
                final[progress.shard] = progress
            on_progress(progress)
    except BaseException:
        for w in workers:
            w.kill()
        raise
    finally:
        for w in workers:
            w.join()
        _relay(logs)
    return [final[r.shard] for r in ranges]


def _relay(logs: Any) -> None:
    """Log here what the workers logged: the parent's handlers put it above a terminal's progress bars, where a
    worker writing to the terminal itself would be overwritten by the next redraw."""
    while True:
        try:
            record = logs.get_nowait()
        except queue.Empty:
            return
        logging.getLogger(record.name).handle(record)


def _mark_lost(ranges: Sequence[ShardRange], final: dict[int, ShardProgress], workers: list[Any]) -> None:
    codes = ", ".join(str(w.exitcode) for w in workers)
    for rng in ranges:
        if rng.shard not in final:
            lost = ShardProgress(rng.shard, rng.log_groups, 0)
            lost.error = f"the worker process died (exit codes {codes}); run the command again to resume"
            final[rng.shard] = lost


def _worker(job: BackfillJob, settings: Settings, credentials: Credentials, dry_run: bool, stop: StopFlag,
            tasks: Any, updates: Any, logs: Any, out_lock: Any) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.handlers.QueueHandler(logs))
    received = []

    def on_term(signum: int, _frame: Any) -> None:
        # Counted here, not read from `stop`: the parent may have set it for the same group-wide signal.
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt
        # Not here: the signal may land while this process is inside stop.is_set() or stop.wait(), which hold the
        # flag's lock, and that lock is neither reentrant nor this process's alone: set() here would hang the
        # worker, and the parent's own set() behind it. A thread takes the lock once the main thread lets go.
        threading.Thread(target=stop.set, name="backfill-stop", daemon=True).start()

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    runtime = Runtime(settings)
    pages = PageProgress()
    runtime.observers.append(pages)
    invoker: Invoker = (DryRunInvoker(runtime, credentials, sys.stdout.buffer, out_lock) if dry_run
                        else LocalInvoker(runtime, credentials, job.scope))
    try:
        while (rng := tasks.get()) is not None:
            result = run_shard(job, rng, invoker, stop, lambda p: updates.put((False, p)), pages=pages)
            updates.put((True, result))
    except KeyboardInterrupt:
        pass  # abandoned on a second signal: the pipeline has dropped what Kafka had not confirmed
    finally:
        runtime.close()
