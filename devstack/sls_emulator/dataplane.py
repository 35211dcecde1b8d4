"""PutLogs, GetCursor, GetCursorTime and PullLogs over the store."""

from __future__ import annotations

from dataclasses import dataclass

from .codec import append_tags, decode_cursor, encode_cursor, frame_group, validate_log_group
from .errors import SlsError, invalid_cursor, parameter_invalid
from .model import Logstore, Shard
from .store import Store


@dataclass(frozen=True)
class PullResult:
    """What PullLogs answers: framed groups plus the x-log-* header values."""

    groups: list[bytes]
    next_cursor: str
    cursor_time: int
    end_of_cursor: bool


def parse_hash_key(key: str) -> int:
    """Parse a 128-bit hex hash key; shorter keys are prefixes (right-padded with zeros)."""
    text = key.strip().lower()
    if not 0 < len(text) <= 32 or any(c not in "0123456789abcdef" for c in text):
        msg = f"hash key {key!r} is not a hex string of at most 32 chars"
        raise parameter_invalid(msg)
    return int(text.ljust(32, "0"), 16)


class DataPlane:
    """Reads and writes log groups."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def put(self, project: str, logstore: str, group: bytes, hash_key: str | None, client_ip: str) -> None:
        """Store one serialized LogGroup in the shard picked by hash key, else round robin."""
        validate_log_group(group)  # reject before anything is stored
        key = parse_hash_key(hash_key) if hash_key is not None else None
        with self.store.lock:
            store = self.store.logstore(project, logstore)
            shard = _route(store, key)
            now = self.store.clock()
            if store.append_meta:
                # SLS adds these tags only when the logstore records client IP / receive time (appendMeta).
                group = append_tags(group, [("__client_ip__", client_ip), ("__receive_time__", str(int(now)))])
            framed = frame_group(group)
            shard.expire(now - store.ttl_seconds)
            received = shard.append(framed, now)
            self.store.write_group(project, logstore, shard.shard_id, received, framed)

    def get_cursor(self, project: str, logstore: str, shard_id: str, start: str) -> str:
        """GetCursor for ``begin``, ``end`` or a unix time (first group received at/after it)."""
        with self.store.lock:
            shard = self.store.shard(project, logstore, shard_id)
            if start == "begin":
                return encode_cursor(shard.first_position)
            if start == "end":
                return encode_cursor(shard.end_position)
            try:
                unix_time = int(start)
            except ValueError:
                unix_time = -1
            if unix_time < 0:
                msg = f"from {start!r} must be begin, end or a unix timestamp"
                raise parameter_invalid(msg)
            return encode_cursor(shard.position_at_time(unix_time))

    def cursor_time(self, project: str, logstore: str, shard_id: str, cursor: str) -> int:
        """GetCursorTime: receive time of the cursor's group (the end cursor gives the last group's)."""
        with self.store.lock:
            shard = self.store.shard(project, logstore, shard_id)
            return shard.time_at(_position(shard, cursor))

    def pull(
        self, project: str, logstore: str, shard_id: str, cursor: str, count: int, end_cursor: str | None
    ) -> PullResult:
        """PullLogs: up to ``count`` groups in [cursor, end_cursor); at the end, none and the same cursor."""
        with self.store.lock:
            shard = self.store.shard(project, logstore, shard_id)
            start = _position(shard, cursor)
            limit = shard.end_position if end_cursor is None else _position(shard, end_cursor)
            stop = max(start, min(start + count, limit))
            groups = shard.slice(start, stop)
            cursor_time = shard.time_at(stop - 1 if stop > start else start)
        return PullResult(groups, encode_cursor(stop), cursor_time, stop >= limit)


def _route(store: Logstore, key: int | None) -> Shard:
    writable = store.writable_shards()
    if not writable:
        raise SlsError("LogStoreWithoutShard", f"logstore {store.name} has no readwrite shard")
    if key is None:
        store.round_robin += 1
        return writable[store.round_robin % len(writable)]
    for shard in writable:
        if shard.contains_key(key):
            return shard
    msg = f"no readwrite shard covers hash key {key:032x}"
    raise parameter_invalid(msg)


def _position(shard: Shard, cursor: str) -> int:
    try:
        position = decode_cursor(cursor)
    except ValueError as exc:
        raise invalid_cursor(cursor, str(exc)) from exc
    if position < shard.first_position:
        raise invalid_cursor(cursor, f"before the begin of shard {shard.shard_id} (expired or foreign)")
    if position > shard.end_position:
        raise invalid_cursor(cursor, f"after the end of shard {shard.shard_id}")
    return position
