"""One method per SLS API: parse the request, call the store layer, shape the SLS response."""

from __future__ import annotations

from typing import Any

from .codec import choose_encoding, compress_body, decompress_body
from .consumer_groups import ConsumerGroups
from .dataplane import DataPlane
from .errors import parameter_invalid
from .http_types import Request, Response
from .store import Store
from .topology import Topology

MAX_PULL_COUNT = 1000


def _segment(req: Request, index: int) -> str:
    """Path segment ``index`` of /logstores/<1>/shards|consumergroups/<3>."""
    return [p for p in req.path.split("/") if p][index]


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        msg = f"{name} must be an integer, got {value!r}"
        raise parameter_invalid(msg) from None


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _object(req: Request) -> dict[str, Any]:
    doc = req.json()
    if not isinstance(doc, dict):
        raise parameter_invalid("body must be a JSON object")
    return doc


class Handlers:
    """Request handlers over one store."""

    def __init__(self, store: Store, region: str = "cn-hangzhou") -> None:
        self.store = store
        self.region = region
        self.data = DataPlane(store)
        self.topology = Topology(store)
        self.groups = ConsumerGroups(store)

    # -- projects ----------------------------------------------------------------------------------

    def list_projects(self, req: Request) -> Response:
        """ListProject."""
        offset, size = _int(req.param("offset", "0"), "offset"), _int(req.param("size", "100"), "size")
        projects, total = self.store.list_projects(req.param("projectName") or "", offset, size)
        docs = [p.describe(self.region) for p in projects]
        return Response.of_json({"count": len(docs), "total": total, "projects": docs})

    def create_project(self, req: Request) -> Response:
        """CreateProject (the name comes from the Host header, like the SDK sends it)."""
        self.store.create_project(req.project, str(_object(req).get("description", "")))
        return Response()

    def get_project(self, req: Request) -> Response:
        """GetProject."""
        with self.store.lock:
            return Response.of_json(self.store.project(req.project).describe(self.region))

    def update_project(self, req: Request) -> Response:
        """UpdateProject."""
        self.store.update_project(req.project, str(_object(req).get("description", "")))
        return Response()

    def delete_project(self, req: Request) -> Response:
        """DeleteProject."""
        self.store.delete_project(req.project)
        return Response()

    # -- logstores ---------------------------------------------------------------------------------

    def list_logstores(self, req: Request) -> Response:
        """ListLogStores."""
        offset, size = _int(req.param("offset", "0"), "offset"), _int(req.param("size", "100"), "size")
        names, total = self.store.list_logstores(req.project, req.param("logstoreName") or "", offset, size)
        return Response.of_json({"count": len(names), "total": total, "logstores": names})

    def create_logstore(self, req: Request) -> Response:
        """CreateLogStore."""
        doc = _object(req)
        name = doc.get("logstoreName")
        if not name or not isinstance(name, str):
            raise parameter_invalid("logstoreName is required")
        self.store.create_logstore(
            req.project,
            name,
            ttl_days=_int(doc.get("ttl", 30), "ttl"),
            shard_count=_int(doc.get("shardCount", 2), "shardCount"),
            append_meta=bool(doc.get("appendMeta", False)),
            auto_split=bool(doc.get("autoSplit", False)),
            max_split_shard=_int(doc.get("maxSplitShard", 64), "maxSplitShard"),
            enable_tracking=bool(doc.get("enable_tracking", False)),
        )
        return Response()

    def get_logstore(self, req: Request) -> Response:
        """GetLogStore."""
        with self.store.lock:
            return Response.of_json(self.store.logstore(req.project, _segment(req, 1)).describe())

    def update_logstore(self, req: Request) -> Response:
        """UpdateLogStore."""
        doc = _object(req)
        flags = {"appendMeta": "append_meta", "autoSplit": "auto_split", "enable_tracking": "enable_tracking"}
        options: dict[str, Any] = {attr: bool(doc[key]) for key, attr in flags.items() if key in doc}
        if "maxSplitShard" in doc:
            options["max_split_shard"] = _int(doc["maxSplitShard"], "maxSplitShard")
        ttl = _int(doc["ttl"], "ttl") if "ttl" in doc else None
        self.store.update_logstore(req.project, _segment(req, 1), ttl, **options)
        return Response()

    def delete_logstore(self, req: Request) -> Response:
        """DeleteLogStore."""
        self.store.delete_logstore(req.project, _segment(req, 1))
        return Response()

    # -- shards and data ---------------------------------------------------------------------------

    def list_shards(self, req: Request) -> Response:
        """ListShards."""
        return Response.of_json(self.topology.list_shards(req.project, _segment(req, 1)))

    def split_shard(self, req: Request) -> Response:
        """SplitShard."""
        shards = self.topology.split(req.project, _segment(req, 1), _segment(req, 3), req.required("key"))
        return Response.of_json(shards)

    def merge_shard(self, req: Request) -> Response:
        """MergeShards."""
        return Response.of_json(self.topology.merge(req.project, _segment(req, 1), _segment(req, 3)))

    def put_logs(self, req: Request) -> Response:
        """PutLogs to /shards/lb (round robin) or /shards/route?key=<hash> (by hash key)."""
        raw_size = _int(req.headers.get("x-log-bodyrawsize", len(req.body)), "x-log-bodyrawsize")
        group = decompress_body(req.body, req.headers.get("x-log-compresstype", ""), raw_size)
        hash_key = req.required("key") if _segment(req, 3) == "route" else None
        self.data.put(req.project, _segment(req, 1), group, hash_key, req.client_ip)
        return Response()

    def get_cursor(self, req: Request) -> Response:
        """GetCursor."""
        cursor = self.data.get_cursor(req.project, _segment(req, 1), _segment(req, 3), req.required("from"))
        return Response.of_json({"cursor": cursor})

    def get_cursor_time(self, req: Request) -> Response:
        """GetCursorTime."""
        when = self.data.cursor_time(req.project, _segment(req, 1), _segment(req, 3), req.required("cursor"))
        return Response.of_json({"cursor_time": when})

    def pull_logs(self, req: Request) -> Response:
        """PullLogs: a LogGroupList, compressed as Accept-Encoding asks (lz4, zstd, deflate or none)."""
        if req.param("query") or req.param("processor"):
            raise parameter_invalid("the SLS emulator does not run SPL (query/processor) on pulls")
        count = _int(req.required("count"), "count")
        if not 1 <= count <= MAX_PULL_COUNT:
            msg = f"count {count} must be in [1, {MAX_PULL_COUNT}]"
            raise parameter_invalid(msg)
        result = self.data.pull(
            req.project,
            _segment(req, 1),
            _segment(req, 3),
            req.required("cursor"),
            count,
            req.param("end_cursor") or None,
        )
        raw = b"".join(result.groups)
        encoding = choose_encoding(req.headers.get("accept-encoding", ""))
        headers = {
            "Content-Type": "application/x-protobuf",
            "x-log-cursor": result.next_cursor,
            "x-log-count": str(len(result.groups)),
            "x-log-bodyrawsize": str(len(raw)),
            "x-log-compresstype": encoding,
            "x-log-end-of-cursor": "1" if result.end_of_cursor else "0",
            "x-log-cursor-time": str(result.cursor_time),
        }
        return Response(200, compress_body(raw, encoding) if raw else b"", headers)

    # -- consumer groups ---------------------------------------------------------------------------

    def list_consumer_groups(self, req: Request) -> Response:
        """ListConsumerGroup."""
        return Response.of_json(self.groups.list(req.project, _segment(req, 1)))

    def create_consumer_group(self, req: Request) -> Response:
        """CreateConsumerGroup."""
        doc = _object(req)
        timeout = _int(doc.get("timeout"), "timeout")
        name = str(doc.get("consumerGroup") or "")
        self.groups.create(req.project, _segment(req, 1), name, timeout, bool(doc.get("order", False)))
        return Response()

    def update_consumer_group(self, req: Request) -> Response:
        """UpdateConsumerGroup."""
        doc = _object(req)
        timeout = _int(doc["timeout"], "timeout") if "timeout" in doc else None
        order = bool(doc["order"]) if "order" in doc else None
        self.groups.update(req.project, _segment(req, 1), _segment(req, 3), timeout, order)
        return Response()

    def delete_consumer_group(self, req: Request) -> Response:
        """DeleteConsumerGroup."""
        self.groups.delete(req.project, _segment(req, 1), _segment(req, 3))
        return Response()

    def heartbeat(self, req: Request) -> Response:
        """ConsumerGroupHeartBeat; the body lists the shards the consumer holds (informational here)."""
        if not isinstance(req.json(), list):
            raise parameter_invalid("heartbeat body must be a JSON array of shard ids")
        consumer = req.required("consumer")
        return Response.of_json(self.groups.heartbeat(req.project, _segment(req, 1), _segment(req, 3), consumer))

    def update_check_point(self, req: Request) -> Response:
        """UpdateCheckPoint."""
        doc = _object(req)
        shard = _int(doc.get("shard"), "shard")
        cursor = doc.get("checkpoint")
        if not isinstance(cursor, str):
            raise parameter_invalid("checkpoint must be a string")
        self.groups.update_checkpoint(
            req.project,
            _segment(req, 1),
            _segment(req, 3),
            req.param("consumer") or "",
            _bool(req.param("forceSuccess")),
            shard,
            cursor,
        )
        return Response()

    def get_check_point(self, req: Request) -> Response:
        """GetCheckPoint; without ``shard`` all checkpoints of the group."""
        shard = req.param("shard")
        shard_id = _int(shard, "shard") if shard is not None else None
        return Response.of_json(self.groups.checkpoints(req.project, _segment(req, 1), _segment(req, 3), shard_id))
