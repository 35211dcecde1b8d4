"""The SLS ("log") trigger of a deployed function, as its `triggerConfig` says, driven from the emulator.

Every `jobConfig.triggerInterval` seconds each shard with new data gets one synchronous invocation for
[the last event's end, the shard's current end cursor), carrying `functionParameter` as `parameter`; an idle
shard gets none. A failed invocation is retried up to `maxRetryTime` times at once; when they are spent the
range stays where it was and is tried again at the next interval (what SLS does then is undocumented; keeping
the range is the side that loses nothing). One shard has at most one invocation in flight. Every attempt is a
record in `logConfig`'s logstore (topic `fc_trigger`), the trigger's own execution log.

Where each shard stands is kept in a JSON file, so a redeploy (a new interval, say) goes on from there. A new
trigger starts at `sourceConfig.startTime`, or at the shards' end when deployed (only data written later).

Not reproduced: the catch-up cadence (one interval-sized window every ~2 s while a shard lags).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aliyun.log import LogClient, LogException, LogItem, PutLogsRequest

from devstack.fc.instances import Outcome, stamp
from devstack.fc.spec import DeployError, FunctionSpec, TriggerSpec
from processor.event import TriggerEvent

log = logging.getLogger(__name__)
LOG_TOPIC = "fc_trigger"
Invoke = Callable[[bytes], Outcome]


def check_source(client: LogClient, spec: TriggerSpec) -> None:
    """The trigger's logstore and log logstore exist: refused at deploy, as SLS refuses to create such a trigger."""
    stores = [(spec.project, spec.logstore, "sourceConfig.logstore")]
    if spec.log_project and spec.log_logstore:
        stores.append((spec.log_project, spec.log_logstore, "logConfig"))
    for project, logstore, what in stores:
        try:
            client.get_logstore(project, logstore)
        except LogException as exc:
            msg = f"trigger {spec.name}: {what} {project}/{logstore}: {exc.get_error_code()}: {exc.get_error_message()}"
            raise DeployError(msg) from None


class Positions:
    """Each shard's next begin cursor, saved to a file after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._cursors: dict[str, str] = json.loads(path.read_text())
        except FileNotFoundError:
            self._cursors = {}

    def get(self, shard: int) -> str | None:
        with self._lock:
            return self._cursors.get(str(shard))

    def set(self, shard: int, cursor: str) -> None:
        with self._lock:
            self._cursors[str(shard)] = cursor
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._cursors, indent=1))
            tmp.replace(self.path)


class SlsTrigger:
    def __init__(self, spec: TriggerSpec, function: FunctionSpec, invoke: Invoke, client: LogClient,
                 endpoint: str, positions: Positions, note: Callable[[str], None]) -> None:
        self.spec, self.function, self.invoke, self.note = spec, function, invoke, note
        self.client, self.endpoint, self.positions = client, endpoint, positions
        self.job_name = uuid.uuid5(uuid.NAMESPACE_URL, f"{function.name}/{spec.name}").hex
        self.ticks: list[float] = []
        self._busy: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(16, thread_name_prefix=f"trigger-{spec.name}")
        self._thread: threading.Thread | None = None

    def start(self) -> SlsTrigger:
        """Fix each shard's start now (data written from here on is delivered), then tick every interval."""
        check_source(self.client, self.spec)
        for shard in self._shards():
            if self.positions.get(shard) is None:
                self.positions.set(shard, self._start_cursor(shard))
        self._thread = threading.Thread(target=self._run, name=f"trigger-{self.spec.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        next_tick = time.monotonic() + self.spec.interval
        while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
            next_tick += self.spec.interval
            try:
                self.tick()
            except Exception:
                # The next tick tries again, as SLS's job does; the trigger must not die of one bad round.
                log.exception("trigger %s: a round over %s/%s failed", self.spec.name, self.spec.project,
                              self.spec.logstore)

    def tick(self) -> None:
        self.ticks.append(time.time())
        for shard in self._shards():
            begin = self.positions.get(shard) or self._start_cursor(shard)
            end = self.client.get_end_cursor(self.spec.project, self.spec.logstore, shard).get_cursor()
            with self._lock:
                if begin == end or shard in self._busy:
                    continue
                self._busy.add(shard)
            self._pool.submit(self._deliver, shard, begin, end)

    def _deliver(self, shard: int, begin: str, end: str) -> None:
        event = TriggerEvent(self.endpoint, self.spec.project, self.spec.logstore, shard, begin, end,
                             dict(self.spec.parameter), self.job_name, str(uuid.uuid4()), int(time.time()))
        payload = json.dumps(event.to_dict()).encode()
        try:
            for attempt in range(self.spec.max_retry + 1):
                started = time.monotonic()
                outcome = self.invoke(payload)
                self._record(event, attempt, outcome, time.monotonic() - started)
                if outcome.ok:
                    self.positions.set(shard, end)
                    return
                if self._stop.is_set():
                    return
        finally:
            with self._lock:
                self._busy.discard(shard)

    def _record(self, event: TriggerEvent, attempt: int, outcome: Outcome, seconds: float) -> None:
        error = outcome.error or {}
        fields = {"trigger": self.spec.name, "function": self.function.name, "jobName": event.job_name,
                  "taskId": event.task_id, "shardId": str(event.shard), "beginCursor": event.begin_cursor,
                  "endCursor": event.end_cursor, "attempt": str(attempt),
                  "status": "success" if outcome.ok else "failed", "requestId": outcome.request_id,
                  "instanceId": outcome.instance_id, "latencyMs": str(round(seconds * 1000)),
                  "errorType": str(error.get("errorType", "")), "errorMessage": str(error.get("errorMessage", ""))}
        # The function's log shows the trigger's side too, under the invocation's request id.
        self.note(f"{stamp()} {outcome.request_id} [TRIGGER] {self.spec.name} shard {event.shard} "
                  f"[{event.begin_cursor}, {event.end_cursor}) attempt {attempt}: {fields['status']} "
                  f"{fields['errorMessage']}".rstrip())
        if not (self.spec.log_project and self.spec.log_logstore):
            return
        item = LogItem(int(time.time()), list(fields.items()))
        try:
            self.client.put_logs(PutLogsRequest(self.spec.log_project, self.spec.log_logstore, LOG_TOPIC,
                                                "fc-local", [item]))
        except LogException as exc:
            log.error("trigger %s: cannot write its log to %s/%s: %s", self.spec.name, self.spec.log_project,
                      self.spec.log_logstore, exc)

    def _shards(self) -> list[int]:
        shards = self.client.list_shards(self.spec.project, self.spec.logstore).get_shards_info()
        return [int(s["shardID"]) for s in shards]

    def _start_cursor(self, shard: int) -> str:
        start: Any = self.spec.start_time if self.spec.start_time is not None else "end"
        return self.client.get_cursor(self.spec.project, self.spec.logstore, shard, start).get_cursor()
