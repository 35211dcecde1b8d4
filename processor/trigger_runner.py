"""The SLS log trigger, run locally: every interval, one trigger-shaped event per shard with new data.

What it reproduces of the FC trigger: each shard is triggered on its own for [last end cursor, current end
cursor); a shard with no new data is not invoked; a shard that lags behind is caught up with back-to-back
invocations of one interval's worth of data each; a failed invocation is retried up to `max_retry` times and,
when that is spent, tried again at the next interval. Readonly parents are read until drained, new children are
picked up from ListShards.

Two cursors are kept per shard, both in the checkpoint store:
  * the runner's own progress (scope `trigger-runner`): the end of the last event that *succeeded*;
  * the processor's checkpoint (scope "", as under FC), which moves inside an event as Kafka confirms batches.
A crash or a stop mid-event leaves the progress at the event's begin; the next event starts there and the
processor resumes from its checkpoint, so nothing is lost and at most the unconfirmed batches are sent again.

Whether the runner has run on a logstore is a marker of its own (see `RunMarker`), recorded before the first
round saves any shard's start: `--start` applies to that first round only, and a shard found later without
progress (a split's child, even once its parent has left ListShards) is read from its beginning.

Progress that retention overtook is handed to the processor as the next event's begin, as the trigger would
retry it: SLS_INVALID_CURSOR_POLICY applies, and what could not be read is a gap in the summary and the round.

Long on purpose: the runner and its run marker share the progress store's rules, which are the point.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aliyun.log import LogException

from checkpoints.base import Checkpoint, CheckpointKey, CheckpointStore
from checkpoints.file import FileCheckpointStore
from checkpoints.sls_consumer_group import SlsConsumerGroupStore
from common.cursors import cursor_from_position, cursor_position
from common.errors import CheckpointError, ConfigError, EventError, ProcessorError
from common.sls_errors import sls_error
from processor.credentials import Credentials
from processor.delivery.summary import Summary
from processor.event import TriggerEvent
from processor.invocation_retry import StopFlag, invocation_retrying
from processor.runtime import Runtime
from processor.sls.shards import BEGIN, END, Logstore, Position, ShardInfo

log = logging.getLogger(__name__)

TRIGGER_SCOPE = "trigger-runner"
# The logstore-level "the runner has run here" marker: its own scope, so no shard's progress stands for it.
STARTED_SCOPE = "trigger-runner-started"


def trigger_progress_store(runtime: Runtime, client: Any) -> CheckpointStore:
    """Where the runner keeps its progress: the SLS consumer group when that is the store, else files.

    Kafka-held checkpoints are written only inside a data transaction, and the runner's progress is not one.
    """
    if runtime.settings.checkpoint.store == "sls":
        return runtime.checkpoint_store(client)
    return FileCheckpointStore(runtime.settings.checkpoint.directory)


class RunMarker(Protocol):
    """Whether the runner has run on one logstore, kept next to its progress."""

    def recorded(self) -> bool: ...
    def record(self) -> None: ...


class StoredRunMarker:
    """The marker as a checkpoint of its own key (scope STARTED_SCOPE, shard 0), for stores that keep any key.

    Only its presence counts; the cursor is position 0, which no shard's data has.
    """

    def __init__(self, store: CheckpointStore, project: str, logstore: str) -> None:
        self.store = store
        self.key = CheckpointKey(project, logstore, 0, STARTED_SCOPE)

    def recorded(self) -> bool:
        return self.store.load(self.key) is not None

    def record(self) -> None:
        self.store.save(self.key, Checkpoint(cursor_from_position(0)))


class ConsumerGroupRunMarker:
    """The marker as a consumer group of its own, `<SLS_CONSUMER_GROUP>-trigger-runner-started`.

    A consumer group holds checkpoints per shard only, and SLS answers an empty list for a shard that no longer
    exists: a checkpoint would vanish with the shard it sits on. The group's existence belongs to the logstore.
    """

    def __init__(self, store: SlsConsumerGroupStore, project: str, logstore: str) -> None:
        self.client = store.client
        self.project = project
        self.logstore = logstore
        self.group = store.group_name(CheckpointKey(project, logstore, 0, STARTED_SCOPE))
        self.timeout = store.group_timeout

    def recorded(self) -> bool:
        try:
            self.client.get_check_point(self.project, self.logstore, self.group)
        except LogException as exc:
            if exc.get_error_code() == "ConsumerGroupNotExist":
                return False
            raise self._error("reading", exc) from exc
        return True

    def record(self) -> None:
        try:
            self.client.create_consumer_group(self.project, self.logstore, self.group, self.timeout)
        except LogException as exc:
            if exc.get_error_code() != "ConsumerGroupAlreadyExist":
                raise self._error("creating", exc) from exc

    def _error(self, doing: str, exc: LogException) -> CheckpointError:
        what = (f"{doing} consumer group {self.group!r} of {self.project}/{self.logstore}, the runner's marker that "
                "it has run there")
        return sls_error(what, exc, CheckpointError, "the role needs log:GetCheckPoint and log:CreateConsumerGroup")


def trigger_run_marker(store: CheckpointStore, project: str, logstore: str) -> RunMarker:
    if isinstance(store, SlsConsumerGroupStore):
        return ConsumerGroupRunMarker(store, project, logstore)
    return StoredRunMarker(store, project, logstore)


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
    gaps: int = 0
    gap_log_groups: int = 0
    max_lag_seconds: float = 0.0
    seconds: float = 0.0

    def add(self, summary: Summary) -> None:
        self.invocations += 1
        self.records += summary.records_read
        self.produced += summary.produced
        self.dead_lettered += summary.dead_lettered
        self.gaps += len(summary.gaps)
        self.gap_log_groups += sum(gap["log_groups"] for gap in summary.gaps)
        self.max_lag_seconds = max(self.max_lag_seconds, summary.lag_seconds or 0.0)


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
        self.marker = trigger_run_marker(self.store, config.project, config.logstore)
        self.policy = runtime.settings.source.invalid_cursor_policy
        self._has_run: bool | None = None
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
        self.rounds += 1
        started = time.monotonic()
        stats = RoundStats()
        shards = [s for s in self.logstore.list_parts() if s.shard not in self._drained]
        progress = {s.shard: self._progress(s.shard) for s in shards}
        # --start applies only when the runner has never run on this logstore; shards that appear later
        # (split/merge children, or shards added while it was down) are read from their beginning.
        start = BEGIN if self._run_before(progress) else self.config.start
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
        log.info("round %d: %d shard(s), %d invocation(s), %d failed, %d records (%d produced, %d dead-lettered), "
                 "%d gap(s) (%d log group(s) lost) in %.2fs = %.0f records/s, max lag %.1fs", self.rounds,
                 stats.shards, stats.invocations, stats.failed, stats.records, stats.produced, stats.dead_lettered,
                 stats.gaps, stats.gap_log_groups, stats.seconds, rate, stats.max_lag_seconds)
        return stats

    def _run_before(self, progress: dict[int, str | None]) -> bool:
        """Whether the runner ran on this logstore before this round; records that it has from now on.

        The marker is recorded before the first round saves any start: a crash in between then reads the
        shards from their beginning on restart (more than asked, nothing skipped). Progress without a marker
        was saved by a runner from before the marker existed.
        """
        if self._has_run is None:
            marked = self.marker.recorded()
            ran = marked or any(p is not None for p in progress.values())
            if not marked:
                self.marker.record()
            self._has_run = True
            return ran
        return True

    def _progress(self, shard: int) -> str | None:
        saved = self.store.load(self._key(shard))
        return None if saved is None else saved.cursor

    def _key(self, shard: int) -> CheckpointKey:
        return CheckpointKey(self.config.project, self.config.logstore, shard, TRIGGER_SCOPE)

    def _poll_shard(self, shard: ShardInfo, progress: str, stats: RoundStats) -> None:
        end = self.logstore.cursor(shard.shard, "end")
        # Catch-up: back-to-back events until the end seen at the start of the round.
        while cursor_position(progress) < cursor_position(end) and not self.stop.is_set():
            event = self._next_event(shard.shard, progress, end)
            try:
                stats.add(self._invoke(event))
            except InvocationFailedError as exc:
                stats.failed += 1
                log.error("%s", exc)
                return
            self.store.save(self._key(shard.shard), Checkpoint(event.end_cursor))
            progress = event.end_cursor
        if shard.readonly and cursor_position(progress) >= cursor_position(end):
            log.info("shard %d is readonly and drained; no longer polled", shard.shard)
            self._drained.add(shard.shard)

    def _next_event(self, shard: int, progress: str, end: str) -> TriggerEvent:
        """The event from `progress`: one interval's worth of data, as the trigger gives a lagging shard.

        Progress older than the oldest data kept still begins the event, as the trigger's retry of it would:
        the processor applies SLS_INVALID_CURSOR_POLICY from its own checkpoint, which knows what was delivered,
        and reports what it could not read as a gap. The window is then measured from the oldest data kept, or
        runs to `end` under 'end' (skip to the newest data).
        """
        kept = self.logstore.cursor(shard, "begin")
        expired = cursor_position(progress) < cursor_position(kept)
        if expired:
            log.warning("shard %d: the runner's progress %s points at data retention removed (oldest kept: %s); "
                        "the next event begins there and SLS_INVALID_CURSOR_POLICY=%s applies", shard, progress,
                        kept, self.policy)
        first = kept if expired else progress
        if (expired and self.policy == "end") or cursor_position(first) >= cursor_position(end):
            window_end = end
        else:
            window_end = self._window_end(shard, first, end)
        c = self.config
        # The event's cursorTime is its last group's receive time, unknown once that group expired too.
        cursor_time = (self.logstore.last_time_before(shard, window_end)
                       if cursor_position(kept) < cursor_position(window_end) else None)
        return TriggerEvent(c.endpoint, c.project, c.logstore, shard, progress, window_end, c.parameter, c.job_name,
                            str(uuid.uuid4()), cursor_time)

    def _window_end(self, shard: int, begin: str, end: str) -> str:
        """At most one interval's worth of data from `begin`, as the trigger gives a lagging shard."""
        first = self.logstore.group_time(shard, begin)
        cut = self.logstore.cursor(shard, first + max(1, int(self.config.interval)))
        return cut if cursor_position(begin) < cursor_position(cut) < cursor_position(end) else end

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
