"""Where the time goes: this project's at-least-once path run serially, each stage timed on its own.

The function overlaps the next pull with producing and confirms batches while producing more, so its stages
cannot be timed in place. This run does the same work with the same parts (SDK client, `Projector`,
`KafkaSink`, producer settings, page sizing), one stage after another:

* pull: the HTTP request to SLS and reading the body (the emulator's time to serve it included);
* decompress: lz4 of the body (timed inside the SDK's `Compressor.decompress_response`);
* decode: protobuf parse into LogGroup objects;
* project: `Projector.project_group`;
* produce: `KafkaSink.produce_all` (librdkafka enqueue, headers included);
* acks: serving delivery reports after each page, and waiting for the last ones at the end.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aliyun.log import logclient

from bench.methods import Outcome, Spec, configure_function, sls_client
from common.deadline import Deadline
from processor.config import Settings
from processor.dead_letter import Provenance
from processor.event import TriggerEvent
from processor.kafka.producer import KafkaSink
from processor.kafka.tracking import DeliveryTracker
from processor.projection import Projector
from processor.sls.source import FIRST_PULL_COUNT, largest_group_bytes, page_count

STAGES = ("pull", "decompress", "decode", "project", "produce", "acks")


def _timed(seconds: Counter[str], stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[stage] += time.perf_counter() - started
    return wrapper


def breakdown(spec: Spec) -> Outcome:
    configure_function(spec, "at-least-once")
    settings = Settings.from_env()
    projector = Projector(settings.projection)
    sink = KafkaSink(settings.kafka.producer_config())
    seconds: Counter[str] = Counter()
    original = logclient.Compressor.decompress_response
    logclient.Compressor.decompress_response = staticmethod(_timed(seconds, "decompress", original))
    try:
        records, raw = _run(spec, settings, projector, sink, seconds)
    finally:
        logclient.Compressor.decompress_response = staticmethod(original)
    sink.close()
    # The decompression ran inside the pull's clock: report the two apart.
    seconds["pull"] -= seconds["decompress"]
    return Outcome(records, raw, {"stage_seconds": {s: round(seconds[s], 3) for s in STAGES}})


def _run(spec: Spec, settings: Settings, projector: Projector, sink: KafkaSink,
         seconds: Counter[str]) -> tuple[int, int]:
    records = raw = 0
    trackers: list[DeliveryTracker] = []
    for event in map(TriggerEvent.from_json, spec.events):
        client = sls_client(event)
        cursor, count = event.begin_cursor, min(settings.source.pull_count, FIRST_PULL_COUNT)
        while cursor != event.end_cursor:
            started = time.perf_counter()
            resp = client.pull_logs(event.project, event.logstore, event.shard, cursor, count=count,
                                    end_cursor=event.end_cursor)
            pulled = time.perf_counter()
            groups = resp.loggroup_list.LogGroups
            decoded = time.perf_counter()
            seconds["pull"] += pulled - started
            seconds["decode"] += decoded - pulled
            tracker = DeliveryTracker()
            trackers.append(tracker)
            for index, group in enumerate(groups):
                t0 = time.perf_counter()
                good, bad = projector.project_group(group)
                t1 = time.perf_counter()
                where = Provenance(event.project, event.logstore, event.shard, cursor, index)
                sink.produce_all(settings.kafka.topic, good, where, tracker)
                seconds["project"] += t1 - t0
                seconds["produce"] += time.perf_counter() - t1
                records += len(good) + len(bad)
            t2 = time.perf_counter()
            sink.poll()
            seconds["acks"] += time.perf_counter() - t2
            raw += resp.get_raw_size()
            count = page_count(settings.source.pull_count, largest_group_bytes(groups), count)
            cursor = resp.get_next_cursor()
    t3 = time.perf_counter()
    deadline = Deadline.after(120)
    for tracker in trackers:
        sink.wait(tracker, deadline)
    seconds["acks"] += time.perf_counter() - t3
    return records, raw
