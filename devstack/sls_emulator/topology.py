"""ListShards, SplitShard and MergeShards."""

from __future__ import annotations

from typing import Any

from .dataplane import parse_hash_key
from .errors import parameter_invalid
from .model import READONLY, READWRITE, Logstore, Shard
from .store import Store


class Topology:
    """Shard layout of logstores."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def list_shards(self, project: str, logstore: str) -> list[dict[str, Any]]:
        """Every shard in id order, except readonly ones whose data retention has all removed (as SLS does).

        A retired shard stays readable by id: only ListShards forgets it, which is what a reader that finds its
        shards by listing them sees.
        """
        with self.store.lock:
            store = self.store.logstore(project, logstore)
            cutoff = self.store.clock() - store.ttl_seconds
            listed = []
            for _, shard in sorted(store.shards.items()):
                shard.expire(cutoff)
                if not (shard.status == READONLY and shard.retired(cutoff)):
                    listed.append(shard.describe())
            return listed

    def split(self, project: str, logstore: str, shard_id: str, key: str) -> list[dict[str, Any]]:
        """Split a readwrite shard at ``key``: it turns readonly, two new shards take its range."""
        split_at = parse_hash_key(key)
        with self.store.lock:
            store = self.store.logstore(project, logstore)
            parent = self.store.shard(project, logstore, shard_id)
            _require_writable(parent)
            if not parent.begin_key < split_at < parent.end_key:
                msg = f"split key {key} is not strictly inside the range of shard {parent.shard_id}"
                raise parameter_invalid(msg)
            now = self.store.clock()
            parent.status = READONLY
            children = [
                store.new_shard(parent.begin_key, split_at, now),
                store.new_shard(split_at, parent.end_key, now),
            ]
            self.store.save_meta()
            return [s.describe() for s in (parent, *children)]

    def merge(self, project: str, logstore: str, shard_id: str) -> list[dict[str, Any]]:
        """Merge a readwrite shard with its right neighbour; both turn readonly, one new shard replaces them."""
        with self.store.lock:
            store = self.store.logstore(project, logstore)
            left = self.store.shard(project, logstore, shard_id)
            _require_writable(left)
            right = _right_neighbour(store, left)
            left.status = right.status = READONLY
            merged = store.new_shard(left.begin_key, right.end_key, self.store.clock())
            self.store.save_meta()
            return [s.describe() for s in (left, right, merged)]


def _require_writable(shard: Shard) -> None:
    if shard.status != READWRITE:
        msg = f"shard {shard.shard_id} is {shard.status}"
        raise parameter_invalid(msg)


def _right_neighbour(store: Logstore, left: Shard) -> Shard:
    for shard in store.writable_shards():
        if shard.begin_key == left.end_key:
            return shard
    msg = f"shard {left.shard_id} has no adjacent readwrite shard to merge with"
    raise parameter_invalid(msg)
