"""Emulator state: projects and logstores, lookups, retention, persistence hooks.

One re-entrant lock guards everything. Handlers hold it only for bookkeeping (list slices, appends);
compression and protobuf work happen outside it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import SlsError, logstore_not_exist, parameter_invalid, project_not_exist, shard_not_exist
from .model import KEY_SPACE, Logstore, Project, Shard
from .persistence import Persistence

MAX_SHARDS_AT_CREATE = 256  # upper bound we accept for shardCount; real quotas vary per account
MAX_TTL_DAYS = 3650


class Store:
    """All SLS resources of one emulator instance."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self._disk = Persistence(data_dir) if data_dir is not None else None
        self.projects: dict[str, Project] = self._disk.load() if self._disk else {}

    # -- lookups; callers hold `lock` ------------------------------------------------------------

    def project(self, name: str) -> Project:
        """The project or 404 ProjectNotExist."""
        found = self.projects.get(name)
        if found is None:
            raise project_not_exist(name)
        return found

    def logstore(self, project: str, name: str) -> Logstore:
        """The logstore or 404 ProjectNotExist / LogStoreNotExist."""
        found = self.project(project).logstores.get(name)
        if found is None:
            raise logstore_not_exist(name)
        return found

    def shard(self, project: str, logstore: str, shard_id: str | int) -> Shard:
        """The shard with retention applied, or 404 ShardNotExist."""
        store = self.logstore(project, logstore)
        try:
            shard = store.shards.get(int(shard_id))
        except ValueError:
            shard = None
        if shard is None:
            raise shard_not_exist(shard_id)
        shard.expire(self.clock() - store.ttl_seconds)
        return shard

    # -- persistence hooks -------------------------------------------------------------------------

    def save_meta(self) -> None:
        """Persist metadata after a mutation (no-op without a data dir)."""
        if self._disk:
            self._disk.save(self.projects)

    def write_group(self, project: str, logstore: str, shard_id: int, received: float, framed: bytes) -> None:
        """Persist one written group (no-op without a data dir)."""
        if self._disk:
            self._disk.append(project, logstore, shard_id, received, framed)

    def close(self) -> None:
        """Release open files."""
        with self.lock:
            if self._disk:
                self._disk.close()

    # -- projects ----------------------------------------------------------------------------------

    def create_project(self, name: str, description: str) -> None:
        """CreateProject; 400 ProjectAlreadyExist if taken."""
        with self.lock:
            if name in self.projects:
                raise SlsError("ProjectAlreadyExist", f"Project {name} already exist")
            now = int(self.clock())
            self.projects[name] = Project(name, description, now, now)
            self.save_meta()

    def update_project(self, name: str, description: str) -> None:
        """UpdateProject (description only)."""
        with self.lock:
            project = self.project(name)
            project.description = description
            project.last_modify_time = int(self.clock())
            self.save_meta()

    def delete_project(self, name: str) -> None:
        """DeleteProject with all its logstores and data."""
        with self.lock:
            self.project(name)
            del self.projects[name]
            if self._disk:
                self._disk.forget(name)
            self.save_meta()

    def list_projects(self, pattern: str, offset: int, size: int) -> tuple[list[Project], int]:
        """Projects whose name contains ``pattern``, paged, plus the total match count."""
        with self.lock:
            names = sorted(n for n in self.projects if pattern in n)
            return [self.projects[n] for n in names[offset : offset + size]], len(names)

    # -- logstores ---------------------------------------------------------------------------------

    def create_logstore(self, project: str, name: str, ttl_days: int, shard_count: int, **options: Any) -> None:
        """CreateLogStore with ``shard_count`` shards splitting the md5 key space evenly.

        ``options`` are the Logstore flags (append_meta, auto_split, max_split_shard, enable_tracking).
        """
        if not 1 <= shard_count <= MAX_SHARDS_AT_CREATE:
            msg = f"shardCount {shard_count} must be in [1, {MAX_SHARDS_AT_CREATE}]"
            raise parameter_invalid(msg)
        _check_ttl(ttl_days)
        with self.lock:
            owner = self.project(project)
            if name in owner.logstores:
                raise SlsError("LogStoreAlreadyExist", f"logstore {name} already exists")
            now = self.clock()
            store = Logstore(name, ttl_days, int(now), int(now), **options)
            for index in range(shard_count):
                begin = index * KEY_SPACE // shard_count
                end = (index + 1) * KEY_SPACE // shard_count
                store.new_shard(begin, end, now)
            owner.logstores[name] = store
            self.save_meta()

    def update_logstore(self, project: str, name: str, ttl_days: int | None, **options: Any) -> None:
        """UpdateLogStore: ttl and flags; shardCount changes are ignored as in SLS (use split/merge)."""
        if ttl_days is not None:
            _check_ttl(ttl_days)
        with self.lock:
            store = self.logstore(project, name)
            if ttl_days is not None:
                store.ttl_days = ttl_days
            for key, value in options.items():
                setattr(store, key, value)
            store.last_modify_time = int(self.clock())
            self.save_meta()

    def delete_logstore(self, project: str, name: str) -> None:
        """DeleteLogStore with its data."""
        with self.lock:
            self.logstore(project, name)
            del self.projects[project].logstores[name]
            if self._disk:
                self._disk.forget(project, name)
            self.save_meta()

    def list_logstores(self, project: str, pattern: str, offset: int, size: int) -> tuple[list[str], int]:
        """Logstore names containing ``pattern``, paged, plus the total match count."""
        with self.lock:
            names = sorted(n for n in self.project(project).logstores if pattern in n)
            return names[offset : offset + size], len(names)

    # -- admin -------------------------------------------------------------------------------------

    def set_ttl_seconds(self, project: str, logstore: str, seconds: float | None) -> None:
        """Override retention with a number of seconds (None restores the logstore's ttl in days)."""
        with self.lock:
            self.logstore(project, logstore).ttl_seconds_override = seconds
            self.save_meta()

    def reset(self) -> None:
        """Forget every project (and its files)."""
        with self.lock:
            for name in list(self.projects):
                self.delete_project(name)


def _check_ttl(ttl_days: int) -> None:
    if not 1 <= ttl_days <= MAX_TTL_DAYS:
        msg = f"ttl {ttl_days} must be in [1, {MAX_TTL_DAYS}] days"
        raise parameter_invalid(msg)
