"""Consumer group APIs: create/list/update/delete, heartbeat and checkpoints."""

from __future__ import annotations

from typing import Any

from .codec import decode_cursor
from .errors import SlsError, parameter_invalid, shard_not_exist
from .model import Checkpoint, ConsumerGroup, Logstore
from .store import Store

# CreateConsumerGroup: "You can create up to 30 consumer groups for a Logstore."
MAX_GROUPS_PER_LOGSTORE = 30


class ConsumerGroups:
    """Consumer groups of logstores."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, project: str, logstore: str, name: str, timeout: int, in_order: bool) -> None:
        """CreateConsumerGroup; 400 ConsumerGroupAlreadyExist if taken."""
        _check_timeout(timeout)
        if not name:
            raise parameter_invalid("consumerGroup must not be empty")
        with self.store.lock:
            store = self.store.logstore(project, logstore)
            if name in store.consumer_groups:
                raise SlsError("ConsumerGroupAlreadyExist", f"consumer group {name} already exist")
            if len(store.consumer_groups) >= MAX_GROUPS_PER_LOGSTORE:
                # The cap is documented; the code is SLS's generic quota error (the exact one is not documented).
                raise SlsError("ExceedQuota", f"consumer group count exceeds the quota of {MAX_GROUPS_PER_LOGSTORE}",
                               403)
            store.consumer_groups[name] = ConsumerGroup(name, timeout, in_order)
            self.store.save_meta()

    def list(self, project: str, logstore: str) -> list[dict[str, Any]]:
        """ListConsumerGroup."""
        with self.store.lock:
            groups = self.store.logstore(project, logstore).consumer_groups.values()
            return [{"name": g.name, "timeout": g.timeout, "order": g.in_order} for g in groups]

    def update(self, project: str, logstore: str, name: str, timeout: int | None, in_order: bool | None) -> None:
        """UpdateConsumerGroup (timeout and/or order)."""
        if timeout is not None:
            _check_timeout(timeout)
        with self.store.lock:
            group = _group(self.store.logstore(project, logstore), name)
            if timeout is not None:
                group.timeout = timeout
            if in_order is not None:
                group.in_order = in_order
            self.store.save_meta()

    def delete(self, project: str, logstore: str, name: str) -> None:
        """DeleteConsumerGroup."""
        with self.store.lock:
            store = self.store.logstore(project, logstore)
            _group(store, name)
            del store.consumer_groups[name]
            self.store.save_meta()

    def heartbeat(self, project: str, logstore: str, name: str, consumer: str) -> list[int]:
        """ConsumerGroupHeartBeat: record the consumer as alive and answer the shards it should hold."""
        if not consumer:
            raise parameter_invalid("consumer must not be empty")
        with self.store.lock:
            store = self.store.logstore(project, logstore)
            group = _group(store, name)
            now = self.store.clock()
            group.heartbeats[consumer] = now
            return group.assignment(list(store.shards), now).get(consumer, [])

    def update_checkpoint(
        self, project: str, logstore: str, name: str, consumer: str, force: bool, shard_id: int, cursor: str
    ) -> None:
        """UpdateCheckPoint; without forceSuccess only the consumer holding the shard may write it."""
        try:
            decode_cursor(cursor)
        except ValueError as exc:
            raise SlsError("InvalidShardCheckPoint", "shard checkpoint not encoded by base64") from exc
        with self.store.lock:
            store = self.store.logstore(project, logstore)
            group = _group(store, name)
            if shard_id not in store.shards:
                raise shard_not_exist(shard_id)
            if not force:
                if not consumer:
                    raise parameter_invalid("consumer is required unless forceSuccess is true")
                held = group.assignment(list(store.shards), self.store.clock()).get(consumer, [])
                if shard_id not in held:
                    raise SlsError("ConsumerNotMatch", f"consumer {consumer} does not hold shard {shard_id}")
            now_us = int(self.store.clock() * 1_000_000)
            group.checkpoints[shard_id] = Checkpoint(cursor, now_us, consumer)
            self.store.save_meta()

    def checkpoints(self, project: str, logstore: str, name: str, shard_id: int | None) -> list[dict[str, Any]]:
        """GetCheckPoint for one shard or all shards; an unknown shard gives an empty list.

        Shards without a saved checkpoint are listed with an empty one: the SDK's consumer treats an empty
        list for an existing shard as an error and an empty checkpoint as "start from the configured position".
        """
        with self.store.lock:
            store = self.store.logstore(project, logstore)
            group = _group(store, name)
            unset = Checkpoint("", 0, "")
            return [
                {"shard": sid, "checkpoint": c.cursor, "updateTime": c.update_time_us, "consumer": c.consumer}
                for sid in sorted(store.shards)
                if shard_id is None or sid == shard_id
                for c in [group.checkpoints.get(sid, unset)]
            ]


def _group(store: Logstore, name: str) -> ConsumerGroup:
    group = store.consumer_groups.get(name)
    if group is None:
        raise SlsError("ConsumerGroupNotExist", f"consumer group {name} does not exist")
    return group


def _check_timeout(timeout: int) -> None:
    if timeout <= 0:
        msg = f"timeout {timeout} must be a positive number of seconds"
        raise parameter_invalid(msg)
