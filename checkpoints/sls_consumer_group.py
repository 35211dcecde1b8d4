"""Checkpoints in an SLS consumer group, so progress is shared by every FC instance and shows in the console."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aliyun.log import LogException

from checkpoints.base import Checkpoint, CheckpointKey, merge
from common.errors import CheckpointError
from common.sls_errors import AUTH_CODES, sls_error

T = TypeVar("T")

# SLS allows this many consumer groups per logstore (CreateConsumerGroup's documentation).
MAX_GROUPS_PER_LOGSTORE = 30
_PERMISSIONS = "log:GetCheckPoint, log:UpdateCheckPoint, log:CreateConsumerGroup, log:ListConsumerGroup"


def _direct(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return call(*args, **kwargs)


class SlsConsumerGroupStore:
    """One consumer group per scope (`<group>` for the trigger, `<group>-<scope>` for a backfill job).

    The group is created on first use, which the pipeline makes happen before anything is produced (a shard's
    first range records its begin). The SDK's `update_check_point` is used with `force_success`, since no
    consumer holds the shard through heartbeats: the trigger, not a consumer group, assigns shards here.
    `bound` gives an invocation its own view whose calls end by its deadline and retry transient failures.
    """

    def __init__(self, client: Any, group: str, group_timeout: int = 60,
                 call: Callable[..., Any] = _direct, known_groups: set[tuple[str, str, str]] | None = None) -> None:
        self.client = client
        self.group = group
        self.group_timeout = group_timeout
        self._call = call
        self._known_groups = set() if known_groups is None else known_groups

    def bound(self, client: Any, retrying: Callable[..., Any]) -> SlsConsumerGroupStore:
        """This store through `client`, every call retried by `retrying` (the groups known stay shared)."""
        return SlsConsumerGroupStore(client, self.group, self.group_timeout, retrying, self._known_groups)

    def group_name(self, key: CheckpointKey) -> str:
        return f"{self.group}-{key.scope}" if key.scope else self.group

    def load(self, key: CheckpointKey) -> Checkpoint | None:
        group = self.group_name(key)
        try:
            resp = self._call(self.client.get_check_point, key.project, key.logstore, group, key.shard)
        except LogException as exc:
            if exc.get_error_code() == "ConsumerGroupNotExist":
                return None
            raise self._error("reading", key, exc) from exc
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
            self._call(self.client.update_check_point, key.project, key.logstore, group, key.shard, merged.cursor,
                       force_success=True)
        except LogException as exc:
            if exc.get_error_code() == "ConsumerGroupNotExist":
                # Deleted since we created it (by hand, or a finished job of the same name): make it again.
                self._known_groups.discard((key.project, key.logstore, group))
                return self.save(key, checkpoint)
            raise self._error("writing", key, exc) from exc
        return merged

    def drop_scope(self, project: str, logstore: str, scope: str) -> bool:
        """Delete the consumer group of `scope` (a finished backfill job); False when it did not exist."""
        group = self.group_name(CheckpointKey(project, logstore, 0, scope))
        try:
            self._call(self.client.delete_consumer_group, project, logstore, group)
        except LogException as exc:
            if exc.get_error_code() == "ConsumerGroupNotExist":
                return False
            raise self._error("deleting the consumer group of", CheckpointKey(project, logstore, 0, scope),
                              exc) from exc
        finally:
            self._known_groups.discard((project, logstore, group))
        return True

    def _ensure_group(self, key: CheckpointKey, group: str) -> None:
        ident = (key.project, key.logstore, group)
        if ident in self._known_groups:
            return
        try:
            self._call(self.client.create_consumer_group, key.project, key.logstore, group, self.group_timeout)
        except LogException as exc:
            if exc.get_error_code() != "ConsumerGroupAlreadyExist":
                raise self._error("creating the consumer group for", key, exc) from exc
        self._known_groups.add(ident)

    def _error(self, doing: str, key: CheckpointKey, exc: LogException) -> CheckpointError:
        group = self.group_name(key)
        what = f"{doing} checkpoint {key} in consumer group {group!r}"
        return sls_error(what, exc, CheckpointError, _hint(exc.get_error_code(), exc.resp_status, key, group))


def _hint(code: str, status: int, key: CheckpointKey, group: str) -> str:
    if code == "ExceedQuota":
        return (f"logstore {key.logstore} already has the most consumer groups SLS allows "
                f"({MAX_GROUPS_PER_LOGSTORE}): delete the ones no longer used (finished backfill jobs are "
                "named SLS_CONSUMER_GROUP-backfill-<job id>), or set SLS_CONSUMER_GROUP to one that exists")
    if code in AUTH_CODES or status in (401, 403):
        return f"the function's role needs {_PERMISSIONS} on logstore {key.logstore}"
    if code in ("ProjectNotExist", "LogStoreNotExist"):
        return "check SLS_ENDPOINT, the project and the logstore of the trigger"
    if code == "ParameterInvalid":
        return f"check SLS_CONSUMER_GROUP: {group!r} must be a valid consumer group name"
    return "SLS kept failing until the time budget ran out; the retry tries again from the last checkpoint"
