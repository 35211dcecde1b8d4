"""The methods compared, each reading the same shard ranges from SLS and writing one topic with acks=all.

* `lesson`: the lesson's loop body applied to SLS records: parse each line, produce, poll, flush per message.
* `naive`: a careful plain loop: the SDK's `get_flatten_logs_json`, `json.loads`/`dumps` per record, `produce`
  per record (waiting out a full queue), one `flush` at the end, failures counted.
* `naive_layout`: the same loop adapted to a layout of `bench.layouts` (fields picked from the flattened log
  and typed, the JSON parsed where it is JSON, the SDK decoding bytes values for the raw layout).
* `ours`: this project's FC function (`processor.handler`), invoked once per shard as the SLS trigger would,
  at-least-once or exactly-once; its instance's start (import, `initialize`) runs before the clock starts.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aliyun.log import LogClient
from confluent_kafka import KafkaError, Producer

from bench.layouts import Shape
from bench.services import ACCESS_KEY_ID, ACCESS_KEY_SECRET
from processor.event import TriggerEvent

logger = logging.getLogger("bench.lesson")


@dataclass
class Spec:
    """What a worker process runs: one method over trigger-shaped events, into one topic."""

    method: str
    bootstrap: str
    topic: str
    events: list[str]
    checkpoint_dir: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    records: int
    raw_bytes: int
    details: dict[str, Any] = field(default_factory=dict)


def sls_client(event: TriggerEvent) -> LogClient:
    return LogClient(event.endpoint, ACCESS_KEY_ID, ACCESS_KEY_SECRET)


def pulls(client: LogClient, event: TriggerEvent, count: int = 1000) -> Iterator[Any]:
    """The SDK's PullLogResponses for the event's range (lz4, the SDK's default)."""
    cursor = event.begin_cursor
    while cursor != event.end_cursor:
        resp = client.pull_logs(event.project, event.logstore, event.shard, cursor, count=count,
                                end_cursor=event.end_cursor)
        yield resp
        if resp.get_next_cursor() == cursor:
            return
        cursor = resp.get_next_cursor()


def lesson(spec: Spec) -> Outcome:
    """The lesson's code (its `handler` and `deliveryReport`), reading SLS logs instead of a file's lines."""
    p = Producer({"bootstrap.servers": spec.bootstrap, "acks": "all"})

    def delivery_report(err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            logger.info("Message delivery failed: %s", err)
            msg = f"Message delivery failed: {err}"
            raise RuntimeError(msg)
        logger.info("Message delivered to %s [%s]", msg.topic(), msg.partition())

    records = raw = 0
    for event in map(TriggerEvent.from_json, spec.events):
        for resp in pulls(sls_client(event), event):
            raw += resp.get_raw_size()
            for log in resp.get_flatten_logs_json():
                content = json.loads(log["content"])
                info = {"speed": content["speed"], "carID": content["carID"]}
                info_str = json.dumps(info)
                p.produce(spec.topic, str(info_str).encode("utf-8"), callback=delivery_report)
                p.poll(0)
                p.flush()
                records += 1
    return Outcome(records, raw)


def naive(spec: Spec) -> Outcome:
    """A careful per-record loop: safe producer settings, full-queue handling, one flush, failures checked."""

    def pick(log: dict[str, Any]) -> dict[str, Any]:
        doc = json.loads(log["content"])
        return {"speed": doc["speed"], "carID": doc["carID"]}

    return _naive_loop(spec, pick, decode_bytes=False)


def naive_layout(spec: Spec) -> Outcome:
    """`naive` on a layout and width of `bench.layouts` (`spec.options`: layout, width)."""
    shape = Shape(spec.options["layout"], spec.options["width"])
    return _naive_loop(spec, shape.naive_record, decode_bytes=shape.layout == "raw")


def _naive_loop(spec: Spec, pick: Callable[[dict[str, Any]], dict[str, Any]], decode_bytes: bool) -> Outcome:
    p = Producer({"bootstrap.servers": spec.bootstrap, "acks": "all", "enable.idempotence": True})
    failures: list[KafkaError] = []

    def report(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    records = raw = 0
    for event in map(TriggerEvent.from_json, spec.events):
        for resp in pulls(sls_client(event), event):
            raw += resp.get_raw_size()
            for log in resp.get_flatten_logs_json(decode_bytes=decode_bytes):
                doc = pick(log)
                value = json.dumps(doc, separators=(",", ":")).encode()
                key = str(doc["carID"]).encode()
                while True:
                    try:
                        p.produce(spec.topic, value, key, on_delivery=report)
                        break
                    except BufferError:
                        p.poll(0.1)
                records += 1
    left = p.flush(120)
    if left or failures:
        msg = f"naive loop: {left} record(s) unconfirmed, {len(failures)} failed (first: {failures[:1]})"
        raise RuntimeError(msg)
    return Outcome(records, raw)


def configure_function(spec: Spec, mode: str) -> None:
    """Environment as `s.yaml` would set it on FC; defaults for everything the benchmark does not name."""
    os.environ.update({
        "KAFKA_BOOTSTRAP_SERVERS": spec.bootstrap,
        "KAFKA_TOPIC": spec.topic,
        "KAFKA_DLQ_TOPIC": f"{spec.topic}.dlq",
        "DELIVERY_MODE": mode,
        "KAFKA_CHECKPOINT_TOPIC": f"{spec.topic}.checkpoints",
        "CHECKPOINT_DIR": spec.checkpoint_dir,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET,
        "LOG_LEVEL": "WARNING",
        **spec.options.get("env", {}),
    })


def start_function(spec: Spec, mode: str) -> None:
    """The FC instance's start, before the clock: import the handler and run `initialize` (the cold start,
    measured on its own), as an instance does once for many invocations."""
    configure_function(spec, mode)
    from processor import handler

    handler.initialize(None)


def ours(spec: Spec) -> Outcome:
    """The FC function, started by `start_function`: one invocation per shard range, one after another.

    `observer_cpu_seconds`: what its page observers (the alert rules' when set) cost the loop's thread, measured
    inside the same run.
    """
    from processor import handler

    records = raw = 0
    invocations = []
    observed = [0.0]
    with _observer_clock(observed):
        for event in spec.events:
            summary = handler.handler(event, None)
            if summary["produced"] != summary["records_read"] or summary["dead_lettered"]:
                msg = f"shard {summary['shard']}: read {summary['records_read']}, produced {summary['produced']}"
                raise RuntimeError(msg)
            records += summary["records_read"]
            raw += summary["bytes_read"]
            invocations.append({k: summary[k] for k in ("shard", "records_read", "batches", "duration_seconds")})
    return Outcome(records, raw, {"invocations": invocations, "observer_cpu_seconds": round(observed[0], 4)})


@contextmanager
def _observer_clock(seconds: list[float]) -> Iterator[None]:
    """Add the CPU time of the calling thread inside `RangeLoop._observe` (once a page) to `seconds[0]`."""
    from processor.delivery.loop import RangeLoop

    original = RangeLoop._observe

    def timed(self: RangeLoop, *args: Any) -> None:
        started = time.thread_time()
        try:
            original(self, *args)
        finally:
            seconds[0] += time.thread_time() - started

    RangeLoop._observe = timed  # type: ignore[method-assign]
    try:
        yield
    finally:
        RangeLoop._observe = original  # type: ignore[method-assign]


def small_ranges(spec: Spec) -> Outcome:
    """Warm invocations, one per event, each timed: latency (ms) per range size (`spec.options["sizes"]`).

    The first event only warms the instance up (its first SLS client, its transactional producer): untimed.
    """
    from processor import handler

    first = handler.handler(spec.events[0], None)
    records, raw = first["records_read"], first["bytes_read"]
    latencies: dict[str, list[float]] = {}
    for event, size in zip(spec.events[1:], spec.options["sizes"], strict=True):
        started = time.perf_counter()
        summary = handler.handler(event, None)
        latencies.setdefault(str(size), []).append(round((time.perf_counter() - started) * 1000, 2))
        if summary["produced"] != size:
            msg = f"a range of {size} records produced {summary['produced']}"
            raise RuntimeError(msg)
        records += summary["records_read"]
        raw += summary["bytes_read"]
    return Outcome(records, raw, {"latencies_ms": latencies})


def start_at_least_once(spec: Spec) -> None:
    start_function(spec, "at-least-once")


def start_exactly_once(spec: Spec) -> None:
    start_function(spec, "exactly-once")
