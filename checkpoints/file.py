"""Checkpoints as small JSON files, written atomically (temp file, fsync, rename) under a per-file lock."""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from pathlib import Path

import orjson

from checkpoints.base import Checkpoint, CheckpointKey, merge
from common.errors import CheckpointError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class FileCheckpointStore:
    """The local default. On FC it lives in one instance's /tmp, which other instances cannot see: what it
    proves holds, but a range another instance checkpointed is delivered again there (use `sls` on FC)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path(self, key: CheckpointKey) -> Path:
        parts = [key.project, key.logstore, key.scope or "_trigger"]
        return self.directory.joinpath(*(_UNSAFE.sub("_", p) for p in parts), f"shard-{key.shard}.json")

    def load(self, key: CheckpointKey) -> Checkpoint | None:
        return self._read(self.path(key))

    def save(self, key: CheckpointKey, checkpoint: Checkpoint) -> Checkpoint:
        """Merge `checkpoint` into the file's; processes sharing the directory serialise on a lock file."""
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_suffix(".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                current = self._read(path)
                merged = merge(current, checkpoint)
                if merged != current:
                    self._write(path, key, merged)
                return merged
        except OSError as exc:
            msg = f"cannot write checkpoint {path}: {exc}"
            raise CheckpointError(msg) from exc

    @staticmethod
    def _read(path: Path) -> Checkpoint | None:
        try:
            doc = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            msg = f"checkpoint file {path} is unreadable ({exc}); delete it to start the shard from the event's range"
            raise CheckpointError(msg) from exc
        cursor = doc.get("cursor") if isinstance(doc, dict) else None
        origin = doc.get("origin") if isinstance(doc, dict) else None
        if not isinstance(cursor, str) or not isinstance(origin, (str, type(None))):
            msg = f"checkpoint file {path} has no 'cursor' string; delete it to start from the event's range"
            raise CheckpointError(msg)
        return Checkpoint(cursor, origin)

    @staticmethod
    def _write(path: Path, key: CheckpointKey, checkpoint: Checkpoint) -> None:
        doc = {"cursor": checkpoint.cursor, "origin": checkpoint.origin, "key": str(key), "saved_at": time.time()}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps(doc))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            # The rename itself is durable only once the directory is synced.
            dir_fd = os.open(path.parent, os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
