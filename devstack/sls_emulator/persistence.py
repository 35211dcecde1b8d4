"""Optional on-disk state so a demo survives a restart.

Layout under the data directory:

* ``meta.json`` - projects, logstores, shards (without data), consumer groups; rewritten atomically on
  every metadata change.
* ``shards/<project>/<logstore>/<shard id>.bin`` - append-only records ``<float64 receive time>
  <uint32 length> <framed log group>``, one per written group, never rewritten. Retention is re-applied
  after loading, so expired records simply stay on disk until the logstore is deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import IO, Any

from .model import Checkpoint, ConsumerGroup, Logstore, Project, Shard

_RECORD = struct.Struct("<dI")
_META_VERSION = 1


class Persistence:
    """Reads and writes emulator state under ``data_dir``."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self._meta = self.root / "meta.json"
        self._open: dict[Path, IO[bytes]] = {}

    def _shard_path(self, project: str, logstore: str, shard_id: int) -> Path:
        return self.root / "shards" / project / logstore / f"{shard_id}.bin"

    def append(self, project: str, logstore: str, shard_id: int, received: float, framed: bytes) -> None:
        """Append one log group record and flush it to the OS."""
        path = self._shard_path(project, logstore, shard_id)
        handle = self._open.get(path)
        if handle is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = self._open[path] = path.open("ab")
        handle.write(_RECORD.pack(received, len(framed)) + framed)
        handle.flush()

    def save(self, projects: dict[str, Project]) -> None:
        """Rewrite the metadata file atomically (temp file, fsync, rename)."""
        doc = {"version": _META_VERSION, "projects": [_project_doc(p) for p in projects.values()]}
        tmp = self._meta.with_suffix(".tmp")
        with tmp.open("w") as out:
            json.dump(doc, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self._meta)

    def load(self) -> dict[str, Project]:
        """Read the metadata and every shard's records; empty if nothing was saved yet."""
        if not self._meta.exists():
            return {}
        doc = json.loads(self._meta.read_text())
        if doc.get("version") != _META_VERSION:
            msg = f"{self._meta}: unsupported metadata version {doc.get('version')!r}"
            raise ValueError(msg)
        projects = {}
        for pdoc in doc["projects"]:
            project = _project_from(pdoc)
            for store in project.logstores.values():
                for shard in store.shards.values():
                    self._load_groups(project.name, store.name, shard)
            projects[project.name] = project
        return projects

    def _load_groups(self, project: str, logstore: str, shard: Shard) -> None:
        path = self._shard_path(project, logstore, shard.shard_id)
        if not path.exists():
            return
        data = path.read_bytes()
        offset = 0
        # A crash mid-append can leave a torn last record; it was never acknowledged, so drop it.
        while offset + _RECORD.size <= len(data):
            received, length = _RECORD.unpack_from(data, offset)
            start = offset + _RECORD.size
            if start + length > len(data):
                break
            shard.groups.append(data[start : start + length])
            shard.times.append(received)
            offset = start + length

    def forget(self, project: str, logstore: str | None = None) -> None:
        """Delete the data files of a logstore, or of a whole project when ``logstore`` is None."""
        target = self.root / "shards" / project
        if logstore is not None:
            target = target / logstore
        for path in [p for p in self._open if target in p.parents]:
            self._open.pop(path).close()
        shutil.rmtree(target, ignore_errors=True)

    def close(self) -> None:
        """Close open shard files."""
        for handle in self._open.values():
            handle.close()
        self._open.clear()


def _project_doc(project: Project) -> dict[str, Any]:
    return {
        "name": project.name,
        "description": project.description,
        "createTime": project.create_time,
        "lastModifyTime": project.last_modify_time,
        "logstores": [_logstore_doc(s) for s in project.logstores.values()],
    }


def _logstore_doc(store: Logstore) -> dict[str, Any]:
    return {
        "name": store.name,
        "ttlDays": store.ttl_days,
        "ttlSecondsOverride": store.ttl_seconds_override,
        "createTime": store.create_time,
        "lastModifyTime": store.last_modify_time,
        "appendMeta": store.append_meta,
        "autoSplit": store.auto_split,
        "maxSplitShard": store.max_split_shard,
        "enableTracking": store.enable_tracking,
        "nextShardId": store.next_shard_id,
        "nextBase": store.next_base,
        "shards": [
            {
                "id": s.shard_id,
                "begin": s.begin_key,
                "end": s.end_key,
                "createTime": s.create_time,
                "base": s.base,
                "status": s.status,
            }
            for s in store.shards.values()
        ],
        "consumerGroups": [
            {
                "name": g.name,
                "timeout": g.timeout,
                "order": g.in_order,
                "checkpoints": [
                    {"shard": shard_id, "cursor": c.cursor, "updateTime": c.update_time_us, "consumer": c.consumer}
                    for shard_id, c in g.checkpoints.items()
                ],
            }
            for g in store.consumer_groups.values()
        ],
    }


def _project_from(doc: dict[str, Any]) -> Project:
    project = Project(doc["name"], doc["description"], doc["createTime"], doc["lastModifyTime"])
    for sdoc in doc["logstores"]:
        store = Logstore(
            name=sdoc["name"],
            ttl_days=sdoc["ttlDays"],
            create_time=sdoc["createTime"],
            last_modify_time=sdoc["lastModifyTime"],
            append_meta=sdoc["appendMeta"],
            auto_split=sdoc["autoSplit"],
            max_split_shard=sdoc["maxSplitShard"],
            enable_tracking=sdoc["enableTracking"],
            ttl_seconds_override=sdoc["ttlSecondsOverride"],
            next_shard_id=sdoc["nextShardId"],
            next_base=sdoc["nextBase"],
        )
        for shdoc in sdoc["shards"]:
            shard = Shard(shdoc["id"], shdoc["begin"], shdoc["end"], shdoc["createTime"], shdoc["base"])
            shard.status = shdoc["status"]
            store.shards[shard.shard_id] = shard
        for gdoc in sdoc["consumerGroups"]:
            group = ConsumerGroup(gdoc["name"], gdoc["timeout"], gdoc["order"])
            for cdoc in gdoc["checkpoints"]:
                group.checkpoints[cdoc["shard"]] = Checkpoint(cdoc["cursor"], cdoc["updateTime"], cdoc["consumer"])
            store.consumer_groups[group.name] = group
        project.logstores[store.name] = store
    return project
