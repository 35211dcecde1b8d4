"""Checkpoints as small JSON files, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import orjson

from checkpoints.base import CheckpointKey
from processor.errors import CheckpointError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class FileCheckpointStore:
    """The local default. On FC it lives in the instance's /tmp: a retry on another instance starts over."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path(self, key: CheckpointKey) -> Path:
        parts = [key.project, key.logstore, key.scope or "_trigger"]
        return self.directory.joinpath(*(_UNSAFE.sub("_", p) for p in parts), f"shard-{key.shard}.json")

    def load(self, key: CheckpointKey) -> str | None:
        path = self.path(key)
        try:
            doc = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            msg = f"checkpoint file {path} is unreadable ({exc}); delete it to start the shard from the event's range"
            raise CheckpointError(msg) from exc
        cursor = doc.get("cursor") if isinstance(doc, dict) else None
        if not isinstance(cursor, str):
            msg = f"checkpoint file {path} has no 'cursor' string; delete it to start from the event's range"
            raise CheckpointError(msg)
        return cursor

    def save(self, key: CheckpointKey, cursor: str) -> None:
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(orjson.dumps({"cursor": cursor, "key": str(key), "saved_at": time.time()}))
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
        except OSError as exc:
            msg = f"cannot write checkpoint {path}: {exc}"
            raise CheckpointError(msg) from exc
