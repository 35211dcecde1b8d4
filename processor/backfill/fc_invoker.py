"""`sls-kafka backfill --via-fc FUNCTION`: the job's events as asynchronous invocations of the deployed function.

Each event is sent with `x-fc-invocation-type: Async` through the official SDK (`alibabacloud-fc20230330`);
the function takes the job's checkpoint scope from the event's jobName, so completion is followed through the
job's checkpoints: an event is done when the shard's checkpoint in the job's scope reaches its end. An event
whose checkpoint stops moving for `stall_seconds` (FC's own async retries spent, or the invocation lost) fails,
and the backfill's retry sends it again. One event per shard is in flight (a shard's events share its
checkpoint), at most `concurrency` in all. Resuming works as locally: an event the checkpoint already covers is
not sent again.

FC answers an async invocation before it runs, so the summary counts log groups (from the checkpoints), not
records: the function's own summaries are in its logs.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from checkpoints.base import Checkpoint, CheckpointKey, CheckpointReader, position
from common.errors import ConfigError, ProcessorError
from processor.backfill.runs import BackfillJob, ShardProgress, ShardRange, run_shard
from processor.credentials import Credentials
from processor.delivery.summary import Summary
from processor.event import TriggerEvent
from processor.invocation_retry import StopFlag

POLL_SECONDS = 0.5


class FcInvocationError(ProcessorError):
    """An event sent to FC did not complete (no checkpoint progress in time, or FC refused it)."""


@dataclass(frozen=True)
class FcTarget:
    """The deployed function and how to reach FC: as for the cloud; the local cloud is just another endpoint."""

    function: str
    endpoint: str
    region: str
    credentials: Credentials
    concurrency: int = 4
    stall_seconds: float = 300.0

    def client(self) -> Any:
        try:
            from alibabacloud_fc20230330.client import Client
            from alibabacloud_tea_openapi.models import Config
        except ModuleNotFoundError:
            msg = "--via-fc needs the FC SDK: python3 -m pip install alibabacloud-fc20230330"
            raise ConfigError(msg) from None
        host = self.endpoint.rsplit(":", 1)[0]
        local = _is_loopback(host)
        creds = self.credentials
        # The SDK sends through HTTP_PROXY whatever NO_PROXY says; a local endpoint is its own proxy then.
        proxy = f"http://{self.endpoint}" if local and (os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy")) \
            else None
        return Client(Config(access_key_id=creds.access_key_id, access_key_secret=creds.access_key_secret,
                             security_token=creds.security_token, endpoint=self.endpoint, region_id=self.region,
                             protocol="http" if local else "https", http_proxy=proxy))


class FcInvoker:
    """An `Invoker` whose events run on FC; `invoke` returns once the job's checkpoint covers the event."""

    def __init__(self, target: FcTarget, client: Any, reader: CheckpointReader, scope: str, stop: StopFlag) -> None:
        self.target, self.client, self.reader, self.scope, self.stop = target, client, reader, scope, stop

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        trigger = TriggerEvent.from_json(event)
        key = CheckpointKey(trigger.project, trigger.logstore, trigger.shard, self.scope)
        end = position(trigger.end_cursor)
        if self._reached(key) >= end:
            return self._summary(trigger, already=True)
        request_id = self._send(event)
        reached, moved = self._reached(key), time.monotonic()
        while reached < end:
            if self.stop.wait(POLL_SECONDS):
                msg = f"stopped while FC request {request_id} was in flight; run the same command again to resume"
                raise FcInvocationError(msg)
            now = self._reached(key)
            if now != reached:
                reached, moved = now, time.monotonic()
            elif time.monotonic() - moved > self.target.stall_seconds:
                msg = (f"FC request {request_id} ({self.target.function}): the job's checkpoint of shard "
                       f"{trigger.shard} did not move for {self.target.stall_seconds:g}s short of the event's end; "
                       "see the function's logs")
                raise FcInvocationError(msg)
        return self._summary(trigger, already=False)

    def _send(self, event: dict[str, Any]) -> str:
        from alibabacloud_fc20230330 import models
        from alibabacloud_tea_openapi.exceptions import ClientException
        from darabonba.runtime import RuntimeOptions

        headers = models.InvokeFunctionHeaders(x_fc_invocation_type="Async")
        try:
            response = self.client.invoke_function_with_options(
                self.target.function, models.InvokeFunctionRequest(body=orjson.dumps(event)), headers,
                RuntimeOptions())
        except ClientException as exc:
            if exc.status_code in (401, 403, 404):
                # The same event would be refused again: name it instead of retrying.
                msg = f"FC refused the invocation of {self.target.function} at {self.target.endpoint}: {exc.message}"
                raise ConfigError(msg) from None
            raise
        return response.headers.get("x-fc-request-id", "?")

    def _reached(self, key: CheckpointKey) -> int:
        checkpoint = self.reader.load(key)
        return -1 if checkpoint is None else position(checkpoint.cursor)

    def _summary(self, event: TriggerEvent, already: bool) -> dict[str, Any]:
        groups = 0 if already else position(event.end_cursor) - position(event.begin_cursor)
        return Summary(project=event.project, logstore=event.logstore, shard=event.shard,
                       begin_cursor=event.begin_cursor, end_cursor=event.end_cursor, cursor_reached=event.end_cursor,
                       log_groups=groups, already_delivered=already).as_dict()


def run_via_fc(job: BackfillJob, ranges: Sequence[ShardRange], target: FcTarget, reader: CheckpointReader,
               stop: StopFlag, on_progress: Callable[[ShardProgress], None], on_tick: Callable[[], None] = lambda: None,
               sleep: Callable[[float], Any] | None = None) -> list[ShardProgress]:
    """Backfill `ranges` through FC, shards in parallel threads (at most `target.concurrency`), in their order."""
    client = target.client()
    lock = threading.Lock()
    # Checkpoint readers (a Kafka consumer among them) serve one thread at a time.
    locked = _LockedReader(reader, threading.Lock())

    def report(progress: ShardProgress) -> None:
        with lock:
            on_progress(progress)

    def shard(rng: ShardRange) -> ShardProgress:
        return run_shard(job, rng, FcInvoker(target, client, locked, job.scope, stop), stop, report, sleep)

    with ThreadPoolExecutor(max(1, min(target.concurrency, len(ranges))), thread_name_prefix="via-fc") as pool:
        futures = [pool.submit(shard, rng) for rng in ranges]
        while not all(f.done() for f in futures):
            with lock:
                on_tick()
            time.sleep(0.2)
    return [f.result() for f in futures]


@dataclass(frozen=True)
class _LockedReader:
    reader: CheckpointReader
    lock: threading.Lock

    def load(self, key: CheckpointKey) -> Checkpoint | None:
        with self.lock:
            return self.reader.load(key)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
