"""The SLS log trigger, run locally: every interval, one trigger-shaped event per shard with new data.

What it reproduces (notes §1.2-1.3): each shard is triggered on its own for [last end cursor, current end
cursor); a shard with no new data is not invoked; a shard that lags behind is caught up with back-to-back
invocations of one interval's worth of data each; a failed invocation is retried up to `max_retry` times and,
when that is spent, tried again at the next interval. Readonly parents are read until drained, new children are
picked up from ListShards.

Two cursors are kept per shard, both in the checkpoint store:
  * the runner's own progress (scope `trigger-runner`): the end of the last event that *succeeded*;
  * the processor's checkpoint (scope "", as under FC), which moves inside an event as Kafka confirms batches.
A crash or a stop mid-event leaves the progress at the event's begin; the next event starts there and the
processor resumes from its checkpoint, so nothing is lost and at most the unconfirmed batches are sent again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_any, wait_exponential_jitter

from checkpoints.base import Checkpoint, CheckpointKey, CheckpointStore
from checkpoints.file import FileCheckpointStore
from processor.credentials import Credentials
from processor.errors import ConfigError, EventError, ProcessorError
from processor.event import TriggerEvent, cursor_position
from processor.pipeline import Summary
from processor.runtime import Runtime
from processor.shards import BEGIN, END, Logstore, Position, ShardInfo

log = logging.getLogger(__name__)

TRIGGER_SCOPE = "trigger-runner"


def trigger_progress_store(runtime: Runtime, client: Any) -> CheckpointStore:
    """Where the runner keeps its progress: the SLS consumer group when that is the store, else files.

    Kafka-held checkpoints are written only inside a data transaction, and the runner's progress is not one.
    """
    if runtime.settings.checkpoint.store == "sls":
        return runtime.checkpoint_store(client)
    return FileCheckpointStore(runtime.settings.checkpoint.directory)


@dataclass(frozen=True)
class TriggerConfig:
    """The trigger's settings (`jobConfig`, `sourceConfig.startTime`, `functionParameter`) for one logstore."""

    endpoint: str
    project: str
    logstore: str
    interval: float = 60.0
    max_retry: int = 3
    start: Position = END
    parameter: dict[str, Any] = field(default_factory=dict)

    @property
    def job_name(self) -> str:
        return f"sls-kafka-run/{self.project}/{self.logstore}"


@dataclass
class RoundStats:
    """One round: `failed` counts events that failed after their retries (1 for a round that failed as a whole)."""

    shards: int = 0
    invocations: int = 0
    failed: int = 0
    records: int = 0
    produced: int = 0
    dead_lettered: int = 0
    max_lag_seconds: float = 0.0
    seconds: float = 0.0

    def add(self, summary: Summary) -> None:
        self.invocations += 1
        self.records += summary.records_read
        self.produced += summary.produced
        self.dead_lettered += summary.dead_lettered
        self.max_lag_seconds = max(self.max_lag_seconds, summary.lag_seconds or 0.0)


class StopFlag(Protocol):
    """threading.Event or multiprocessing.Event."""

    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


def invocation_retrying(max_retry: int, stop: StopFlag, sleep: Callable[[float], Any], what: str) -> Retrying:
    """The trigger's retry policy for one event: `max_retry` retries with backoff, cut short by `stop`.

    Like the trigger, it retries whatever the function raised, except errors the same event reproduces.
    """

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: invocation failed (attempt %d of %d): %s; retrying in %.1fs", what, state.attempt_number,
                    max_retry + 1, exc, state.upcoming_sleep)

    return Retrying(
        retry=retry_if_exception(lambda exc: isinstance(exc, Exception) and
                                 not isinstance(exc, (ConfigError, EventError))),
        stop=stop_any(stop_after_attempt(max_retry + 1), lambda _: stop.is_set()),
        wait=wait_exponential_jitter(multiplier=1.0, max=30.0, jitter=1.0),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


class InvocationFailedError(ProcessorError):
    """Every attempt of one event failed; the range is tried again at the next interval."""


class TriggerRunner:
    """Polls one logstore like the FC log trigger and runs the handler logic (`Runtime.process`) per event.

    `stop` is checked between invocations and cuts backoff and interval sleeps short; an invocation in flight
    is finished (the caller abandons it by raising KeyboardInterrupt, which the pipeline handles cleanly).
    """

    def __init__(self, runtime: Runtime, config: TriggerConfig, credentials: Credentials,
                 stop: StopFlag | None = None, sleep: Callable[[float], Any] | None = None) -> None:
        self.runtime = runtime
        self.config = config
        self.credentials = credentials
        self.stop = stop or threading.Event()
        self._sleep = sleep or self.stop.wait
        client = runtime.sls_client(config.endpoint, credentials)
        self.logstore = Logstore(client, config.project, config.logstore)
        self.store = trigger_progress_store(runtime, client)
        self._drained: set[int] = set()
        self.rounds = 0

    def run(self, iterations: int | None = None) -> list[RoundStats]:
        """Poll every interval until stopped (or for `iterations` rounds); the first round's errors are fatal."""
        history: list[RoundStats] = []
        while not self.stop.is_set() and (iterations is None or len(history) < iterations):
            started = time.monotonic()
            try:
                history.append(self.run_round())
            except ProcessorError as exc:
                if self.rounds == 1:
                    raise
                log.error("round %d failed: %s; trying again in %ss", self.rounds, exc, self.config.interval)
                history.append(RoundStats(failed=1))
            if iterations is None or len(history) < iterations:
                self._sleep(max(0.0, self.config.interval - (time.monotonic() - started)))
        return history

    def run_round(self) -> RoundStats:
        """One poll of every shard, catching each up to the end cursor it has when the round reaches it."""
        first_round = self.rounds == 0
        self.rounds += 1
        started = time.monotonic()
        stats = RoundStats()
        shards = [s for s in self.logstore.shards() if s.shard not in self._drained]
        progress = {s.shard: self._progress(s.shard) for s in shards}
        # --start applies only when the runner has never run on this logstore; shards that appear later
        # (split/merge children, or shards added while it was down) are read from their beginning.
        start = self.config.start if first_round and all(p is None for p in progress.values()) else BEGIN
        # Every new shard's start is saved before any invocation, so a crash now cannot change where it starts.
        for shard in shards:
            if progress[shard.shard] is None:
                progress[shard.shard] = self.logstore.resolve(shard.shard, start, "--start")
                self.store.save(self._key(shard.shard), Checkpoint(progress[shard.shard]))
        for shard in shards:
            if self.stop.is_set():
                break
            stats.shards += 1
            self._poll_shard(shard, progress[shard.shard], stats)
        stats.seconds = time.monotonic() - started
        rate = stats.records / stats.seconds if stats.seconds > 0 else 0.0
        log.info("round %d: %d shard(s), %d invocation(s), %d failed, %d records (%d produced, %d dead-lettered) in "
                 "%.2fs = %.0f records/s, max lag %.1fs", self.rounds, stats.shards, stats.invocations,
                 stats.failed, stats.records, stats.produced, stats.dead_lettered, stats.seconds, rate,
                 stats.max_lag_seconds)
        return stats

    def _progress(self, shard: int) -> str | None:
        saved = self.store.load(self._key(shard))
        return None if saved is None else saved.cursor

    def _key(self, shard: int) -> CheckpointKey:
        return CheckpointKey(self.config.project, self.config.logstore, shard, TRIGGER_SCOPE)

    def _poll_shard(self, shard: ShardInfo, progress: str, stats: RoundStats) -> None:
        end = self.logstore.cursor(shard.shard, "end")
        # Catch-up: back-to-back events until the end seen at the start of the round.
        while cursor_position(progress) < cursor_position(end) and not self.stop.is_set():
            window_end = self._window_end(shard.shard, progress, end)
            event = self._event(shard.shard, progress, window_end)
            try:
                stats.add(self._invoke(event))
            except InvocationFailedError as exc:
                stats.failed += 1
                log.error("%s", exc)
                return
            self.store.save(self._key(shard.shard), Checkpoint(window_end))
            progress = window_end
        if shard.readonly and cursor_position(progress) >= cursor_position(end):
            log.info("shard %d is readonly and drained; no longer polled", shard.shard)
            self._drained.add(shard.shard)

    def _window_end(self, shard: int, begin: str, end: str) -> str:
        """At most one interval's worth of data from `begin`, as the trigger gives a lagging shard."""
        first = self.logstore.group_time(shard, begin)
        cut = self.logstore.cursor(shard, first + max(1, int(self.config.interval)))
        return cut if cursor_position(begin) < cursor_position(cut) < cursor_position(end) else end

    def _event(self, shard: int, begin: str, end: str) -> TriggerEvent:
        c = self.config
        return TriggerEvent(c.endpoint, c.project, c.logstore, shard, begin, end, c.parameter, c.job_name,
                            str(uuid.uuid4()), self.logstore.last_time_before(shard, end))

    def _invoke(self, event: TriggerEvent) -> Summary:
        retrying = invocation_retrying(self.config.max_retry, self.stop, self._sleep, f"shard {event.shard}")
        try:
            return retrying(self.runtime.process, event, self.credentials)
        except (ConfigError, EventError):
            raise
        except Exception as exc:
            msg = (f"shard {event.shard}: invocation {event.task_id} for [{event.begin_cursor}, {event.end_cursor}) "
                   f"failed: {exc}; the next round tries the range again")
            raise InvocationFailedError(msg) from exc
