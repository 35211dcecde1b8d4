"""In-memory SLS resources: projects, logstores, shards and consumer groups.

Nothing here locks; `store.Store` serialises all access under one lock.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

KEY_SPACE = 1 << 128  # shard hash keys are 128-bit (md5) values
# Cursor positions reserved per shard; consecutive shards' bases are at least this far apart so one
# shard's cursors are never valid on another.
CURSOR_SPAN = 1 << 40
READWRITE, READONLY = "readwrite", "readonly"


def hex_key(value: int) -> str:
    """Render a hash key as SLS does: 32 lowercase hex chars; the top of the space shows as all f."""
    return format(min(value, KEY_SPACE - 1), "032x")


@dataclass
class Shard:
    """One shard: its key range and its log groups, each stored framed and ready to concatenate.

    A group's cursor position is ``base + index since creation``; ``dropped`` counts the groups that
    retention has already removed from the head of ``groups``.
    """

    shard_id: int
    begin_key: int
    end_key: int
    create_time: int
    base: int
    status: str = READWRITE
    dropped: int = 0
    groups: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # receive time per group, non-decreasing

    @property
    def first_position(self) -> int:
        """Position of the oldest retained group (the `begin` cursor)."""
        return self.base + self.dropped

    @property
    def end_position(self) -> int:
        """Position the next written group will get (the `end` cursor)."""
        return self.base + self.dropped + len(self.groups)

    def contains_key(self, key: int) -> bool:
        """Tell whether a hash key routes to this shard's range."""
        return self.begin_key <= key < self.end_key

    def append(self, framed: bytes, received: float) -> float:
        """Add a group and return its receive time, clamped so times never go backwards (for bisect)."""
        if self.times:
            received = max(received, self.times[-1])
        self.groups.append(framed)
        self.times.append(received)
        return received

    def expire(self, cutoff: float) -> None:
        """Drop groups received before ``cutoff``."""
        index = bisect.bisect_left(self.times, cutoff)
        if index:
            del self.groups[:index]
            del self.times[:index]
            self.dropped += index

    def retired(self, cutoff: float) -> bool:
        """Whether retention removed all the shard holds: nothing kept, nothing received since ``cutoff``.

        Call after ``expire(cutoff)``. A shard that never held data counts from its creation.
        """
        return not self.groups and (self.dropped > 0 or self.create_time < cutoff)

    def position_at_time(self, unix_time: int) -> int:
        """Position of the first group received at or after ``unix_time`` (the end if none)."""
        return self.first_position + bisect.bisect_left(self.times, unix_time)

    def time_at(self, position: int) -> int:
        """Receive time of the group at ``position``; the end maps to the last group (or creation)."""
        index = position - self.first_position
        if index < len(self.times):
            return int(self.times[index])
        return int(self.times[-1]) if self.times else self.create_time

    def slice(self, start: int, stop: int) -> list[bytes]:
        """Framed groups at positions [start, stop)."""
        first = self.first_position
        return self.groups[start - first : stop - first]

    def describe(self) -> dict[str, Any]:
        """The ListShards JSON entry."""
        return {
            "shardID": self.shard_id,
            "status": self.status,
            "inclusiveBeginKey": hex_key(self.begin_key),
            "exclusiveEndKey": hex_key(self.end_key),
            "createTime": self.create_time,
        }


@dataclass
class Checkpoint:
    """A consumer group's saved cursor for one shard."""

    cursor: str
    update_time_us: int
    consumer: str


@dataclass
class ConsumerGroup:
    """Consumer group settings, checkpoints and (not persisted) consumer heartbeats."""

    name: str
    timeout: int
    in_order: bool
    checkpoints: dict[int, Checkpoint] = field(default_factory=dict)
    heartbeats: dict[str, float] = field(default_factory=dict)

    def assignment(self, shard_ids: list[int], now: float) -> dict[str, list[int]]:
        """Deal shards round-robin over the consumers whose last heartbeat is within the timeout."""
        live = sorted(c for c, seen in self.heartbeats.items() if now - seen <= self.timeout)
        result: dict[str, list[int]] = {c: [] for c in live}
        for index, shard_id in enumerate(sorted(shard_ids)):
            if live:
                result[live[index % len(live)]].append(shard_id)
        return result


@dataclass
class Logstore:
    """A logstore: settings, shards and consumer groups."""

    name: str
    ttl_days: int
    create_time: int
    last_modify_time: int
    append_meta: bool = False
    auto_split: bool = False
    max_split_shard: int = 64
    enable_tracking: bool = False
    ttl_seconds_override: float | None = None  # test/admin knob; real SLS only has whole days
    shards: dict[int, Shard] = field(default_factory=dict)
    consumer_groups: dict[str, ConsumerGroup] = field(default_factory=dict)
    next_shard_id: int = 0
    next_base: int = 0
    round_robin: int = 0

    @property
    def ttl_seconds(self) -> float:
        """Retention in seconds."""
        if self.ttl_seconds_override is not None:
            return self.ttl_seconds_override
        return self.ttl_days * 86400.0

    def new_shard(self, begin_key: int, end_key: int, now: float) -> Shard:
        """Create a readwrite shard with the next id and a cursor base that looks like a ns timestamp."""
        base = max(int(now * 1e9), self.next_base)
        shard = Shard(self.next_shard_id, begin_key, end_key, int(now), base)
        self.shards[shard.shard_id] = shard
        self.next_shard_id += 1
        self.next_base = base + CURSOR_SPAN
        return shard

    def writable_shards(self) -> list[Shard]:
        """Readwrite shards in id order."""
        return [s for _, s in sorted(self.shards.items()) if s.status == READWRITE]

    def describe(self) -> dict[str, Any]:
        """The GetLogStore JSON document."""
        return {
            "logstoreName": self.name,
            "ttl": self.ttl_days,
            "shardCount": len(self.writable_shards()),
            "enable_tracking": self.enable_tracking,
            "appendMeta": self.append_meta,
            "autoSplit": self.auto_split,
            "maxSplitShard": self.max_split_shard,
            "createTime": self.create_time,
            "lastModifyTime": self.last_modify_time,
            "telemetryType": "",
        }


@dataclass
class Project:
    """A project and its logstores."""

    name: str
    description: str
    create_time: int
    last_modify_time: int
    logstores: dict[str, Logstore] = field(default_factory=dict)

    def describe(self, region: str) -> dict[str, Any]:
        """The GetProject JSON document."""
        return {
            "projectName": self.name,
            "description": self.description,
            "status": "Normal",
            "region": region,
            "owner": "",
            "createTime": str(self.create_time),
            "lastModifyTime": str(self.last_modify_time),
            "resourceGroupId": "",
        }
