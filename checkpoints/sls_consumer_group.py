"""Checkpoints in an SLS consumer group, so progress is shared by every FC instance and shows in the console."""

from __future__ import annotations

from typing import Any

from aliyun.log import LogException

from checkpoints.base import Checkpoint, CheckpointKey, merge
from processor.errors import CheckpointError
from processor.retry import name_resolution_error


class SlsConsumerGroupStore:
    """One consumer group per scope (`<group>` for the trigger, `<group>-<scope>` for a backfill job).

    The group is created on first use. The SDK's `update_check_point` is used with `force_success`, since no
    consumer holds the shard through heartbeats: the trigger, not a consumer group, assigns shards here.
    """

    def __init__(self, client: Any, group: str, group_timeout: int = 60) -> None:
        self.client = client
        self.group = group
        self.group_timeout = group_timeout
        self._known_groups: set[tuple[str, str, str]] = set()

    def group_name(self, key: CheckpointKey) -> str:
        return f"{self.group}-{key.scope}" if key.scope else self.group

    def load(self, key: CheckpointKey) -> Checkpoint | None:
        group = self.group_name(key)
        try:
            resp = self.client.get_check_point(key.project, key.logstore, group, key.shard)
        except LogException as exc:
            if exc.get_error_code() == "ConsumerGroupNotExist":
                return None
            raise self._error("read", key, exc) from exc
        for entry in resp.get_consumer_group_check_points() or []:
            if int(entry.get("shard", -1)) == key.shard and entry.get("checkpoint"):
                return Checkpoint(str(entry["checkpoint"]))
        return None

    def save(self, key: CheckpointKey, checkpoint: Checkpoint) -> Checkpoint:
        """Compare, then write: a slower instance's older cursor never overwrites a newer one.

        SLS has no compare-and-set, so two saves racing within one round trip can still both write; the
        trigger runs one invocation per shard at a time, so that takes a retry overlapping a slow instance.
        """
        group = self.group_name(key)
        self._ensure_group(key, group)
        current = self.load(key)
        merged = Checkpoint(merge(current, checkpoint).cursor)  # a consumer group keeps no origin
        if merged == current:
            return merged
        try:
            self.client.update_check_point(key.project, key.logstore, group, key.shard, merged.cursor,
                                           force_success=True)
        except LogException as exc:
            raise self._error("write", key, exc) from exc
        return merged

    def _ensure_group(self, key: CheckpointKey, group: str) -> None:
        ident = (key.project, key.logstore, group)
        if ident in self._known_groups:
            return
        try:
            self.client.create_consumer_group(key.project, key.logstore, group, self.group_timeout)
        except LogException as exc:
            if exc.get_error_code() != "ConsumerGroupAlreadyExist":
                raise self._error("create the consumer group for", key, exc) from exc
        self._known_groups.add(ident)

    def _error(self, what: str, key: CheckpointKey, exc: LogException) -> CheckpointError:
        if (unresolved := name_resolution_error(exc, f"to {what} checkpoint {key}")) is not None:
            return CheckpointError(str(unresolved))
        msg = (f"cannot {what} checkpoint {key} in consumer group {self.group_name(key)!r}: "
               f"{exc.get_error_code()} {exc.get_error_message()} (the role needs log:UpdateCheckPoint, "
               "log:GetCheckPoint, log:CreateConsumerGroup)")
        return CheckpointError(msg)
