"""The benchmark's data: the lesson's driving logs written to the SLS emulator, and what Kafka must end up with.

Each log is one JSON line in the `content` field (Logtail's simple mode), with the lesson's fields plus a
sequence number (~125 bytes). Group sizes spread log-uniformly from 16 (a terminal's small upload) to 4,096
(a full Logtail/producer batch, the most SLS takes in one group). Writes go through the SDK's `put_log_raw`
(lz4 on the wire) and the emulator spreads groups round-robin over the shards.

`Expected` is an order-free fingerprint of the projected records (count plus the sum of per-record digests of
the compact JSON value), so a method's output can be checked without holding millions of records in memory.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from aliyun.log import LogClient
from aliyun.log.proto import LogGroup

from bench.layouts import Shape
from processor.event import TriggerEvent

MIN_GROUP, MAX_GROUP = 16, 4096
MANUFACTURERS = ("BenZ", "BYD", "VW", "Toyota", "Tesla")
CITIES = ("Beijing", "Shanghai", "Hangzhou", "Shenzhen", "Chengdu", "Wuhan")
_MASK = (1 << 64) - 1


def record_digest(value: bytes) -> int:
    """64-bit digest of one record's compact JSON; summed, it fingerprints a multiset of records."""
    return int.from_bytes(hashlib.blake2b(value, digest_size=8).digest(), "little")


@dataclass
class Expected:
    """Fingerprint of the records a correct method delivers: the compact JSON of speed and carID."""

    records: int = 0
    digest: int = 0

    def add(self, value: bytes) -> None:
        self.records += 1
        self.digest = (self.digest + record_digest(value)) & _MASK


@dataclass
class Dataset:
    """One logstore of the emulator filled with driving logs."""

    project: str
    logstore: str
    shards: int
    records: int
    groups: int
    raw_bytes: int
    expected: Expected

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Dataset:
        return cls(**{**doc, "expected": Expected(**doc["expected"])})


def driving_logs(count: int, seed: int) -> Iterator[dict[str, Any]]:
    """The lesson's driving-log records, deterministic for a seed."""
    rng = random.Random(seed)
    for i in range(count):
        yield {"speed": rng.randint(0, 180), "carID": rng.randint(1000, 99_999),
               "manufacturer": rng.choice(MANUFACTURERS), "zone": "China", "distance": rng.randint(1, 1200),
               "endAt": rng.choice(CITIES), "startAt": rng.choice(CITIES), "seq": i}


def group_sizes(total: int, rng: random.Random) -> Iterator[int]:
    """Log-uniform group sizes in [MIN_GROUP, MAX_GROUP] adding up to `total`."""
    lo, hi = math.log(MIN_GROUP), math.log(MAX_GROUP)
    left = total
    while left > 0:
        size = min(left, round(math.exp(rng.uniform(lo, hi))))
        left -= size
        yield size


def fill(client: LogClient, project: str, logstore: str, shards: int, records: int, seed: int = 7) -> Dataset:
    """Create `logstore` with `shards` shards and write `records` driving logs to it."""
    client.create_logstore(project, logstore, ttl=7, shard_count=shards)
    expected = Expected()
    logs = driving_logs(records, seed)
    groups = raw = 0
    now = 1_700_000_000
    for size in group_sizes(records, random.Random(seed + 1)):
        group = LogGroup()
        group.Topic, group.Source = "driving", "10.0.0.7"
        for _ in range(size):
            rec = next(logs)
            log = group.Logs.add()
            log.Time = now + rec["seq"] // 1000
            content = log.Contents.add()
            content.Key, content.Value = "content", orjson.dumps(rec).decode()
            expected.add(orjson.dumps({"speed": rec["speed"], "carID": rec["carID"]}))
        raw += group.ByteSize()
        client.put_log_raw(project, logstore, group)
        groups += 1
    return Dataset(project, logstore, shards, records, groups, raw, expected)


def fill_layout(client: LogClient, project: str, shape: Shape, records: int, seed: int = 11) -> Dataset:
    """A one-shard logstore named after `shape`, holding `records` logs in its layout (same group sizes)."""
    logstore = f"layout-{shape.name}"
    client.create_logstore(project, logstore, ttl=7, shard_count=1)
    expected = Expected()
    logs = shape.logs(records, seed)
    groups = raw = 0
    for size in group_sizes(records, random.Random(seed + 1)):
        recs = [next(logs) for _ in range(size)]
        for rec in recs:
            expected.add(shape.projected(rec))
        group = shape.group(recs, 1_700_000_000 + groups)
        raw += group.ByteSize()
        client.put_log_raw(project, logstore, group)
        groups += 1
    return Dataset(project, logstore, 1, records, groups, raw, expected)


@dataclass
class SmallRanges:
    """Consecutive ranges of one shard, `reps` of each size: what warm invocations of an everyday trigger carry."""

    dataset: Dataset
    sizes: list[int]
    events: list[str]  # a warm-up range first, then sizes[i] records in events[i + 1]


def fill_small_ranges(client: LogClient, project: str, endpoint: str, sizes: tuple[int, ...], reps: int,
                      seed: int = 13) -> SmallRanges:
    """One shard holding, for each size, `reps` ranges of that many driving logs (groups of up to 1,000 logs,
    as Logtail sends them every second or so), each range a trigger event of its own; a first one of the
    smallest size warms an instance up."""
    logstore = "small-ranges"
    client.create_logstore(project, logstore, ttl=7, shard_count=1)
    expected = Expected()
    logs = driving_logs(sum(sizes) * reps + min(sizes), seed)
    groups = raw = 0
    range_sizes, events = [], []
    for size in [min(sizes), *(size for size in sizes for _ in range(reps))]:
        begin = client.get_end_cursor(project, logstore, 0).get_cursor()
        left = size
        while left:
            group = LogGroup()
            group.Topic, group.Source = "driving", "10.0.0.7"
            for _ in range(min(left, 1000)):
                rec = next(logs)
                log = group.Logs.add()
                log.Time = 1_700_000_000 + rec["seq"] // 1000
                content = log.Contents.add()
                content.Key, content.Value = "content", orjson.dumps(rec).decode()
                expected.add(orjson.dumps({"speed": rec["speed"], "carID": rec["carID"]}))
            left -= len(group.Logs)
            raw += group.ByteSize()
            client.put_log_raw(project, logstore, group)
            groups += 1
        end = client.get_end_cursor(project, logstore, 0).get_cursor()
        event = TriggerEvent(endpoint, project, logstore, 0, begin, end, {}, "bench", f"small-{len(events)}")
        events.append(orjson.dumps(event.to_dict()).decode())
        range_sizes.append(size)
    data = Dataset(project, logstore, 1, sum(range_sizes), groups, raw, expected)
    return SmallRanges(data, range_sizes[1:], events)


def trigger_events(client: LogClient, endpoint: str, data: Dataset) -> list[bytes]:
    """One SLS-trigger event per shard covering everything written, as FC would deliver them."""
    events = []
    for shard in range(data.shards):
        begin = client.get_begin_cursor(data.project, data.logstore, shard).get_cursor()
        end = client.get_end_cursor(data.project, data.logstore, shard).get_cursor()
        event = TriggerEvent(endpoint, data.project, data.logstore, shard, begin, end, {}, "bench", f"task-{shard}")
        events.append(orjson.dumps(event.to_dict()))
    return events
