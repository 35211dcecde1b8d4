"""Maps SLS REST paths to operations (the op names double as fault-injection targets)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import SlsError
from .handlers import Handlers
from .http_types import Request, Response


@dataclass(frozen=True)
class Route:
    """A resolved request: operation name, its logstore/shard (for fault filters) and the handler."""

    op: str
    logstore: str
    shard: int | None
    handler: Callable[[Request], Response]


def not_found(method: str, path: str, hint: str = "") -> SlsError:
    """SLS-style 404 for paths the emulator does not serve (also the readiness probe's answer)."""
    return SlsError("NotFound", f"the SLS emulator has no API for {method} {path}{'; ' + hint if hint else ''}", 404)


class Router:
    """Resolves requests against the handlers."""

    def __init__(self, handlers: Handlers) -> None:
        self.h = handlers

    def resolve(self, req: Request) -> Route:
        """Find the operation for a request; 404 NotFound if there is none."""
        parts = [p for p in req.path.split("/") if p]
        if not req.project:
            if req.method == "GET" and not parts:
                return Route("project", "", None, self.h.list_projects)
            raise not_found(req.method, req.path, "the Host header names no project (<project>.<endpoint>)")
        route = self._project_route(req) if not parts else None
        if route is None and parts[:1] == ["logstores"]:
            route = self._logstore_route(req, parts[1:])
        if route is None:
            raise not_found(req.method, req.path)
        return route

    def _project_route(self, req: Request) -> Route | None:
        handler = {
            "GET": self.h.get_project,
            "POST": self.h.create_project,
            "PUT": self.h.update_project,
            "DELETE": self.h.delete_project,
        }.get(req.method)
        return Route("project", "", None, handler) if handler else None

    def _logstore_route(self, req: Request, parts: list[str]) -> Route | None:
        method, h = req.method, self.h
        if not parts:
            handler = {"GET": h.list_logstores, "POST": h.create_logstore}.get(method)
            return Route("logstore", "", None, handler) if handler else None
        logstore, rest = parts[0], parts[1:]
        if not rest:
            if req.param("type") is not None:
                return None  # GetLogs / ListTopics / histograms: query APIs the emulator does not serve
            handler = {"GET": h.get_logstore, "PUT": h.update_logstore, "DELETE": h.delete_logstore}.get(method)
            return Route("logstore", logstore, None, handler) if handler else None
        if rest[0] == "shards":
            return self._shard_route(req, logstore, rest[1:])
        if rest[0] == "consumergroups":
            return self._group_route(req, logstore, rest[1:])
        return None

    def _shard_route(self, req: Request, logstore: str, rest: list[str]) -> Route | None:
        method, h = req.method, self.h
        if not rest:
            return Route("list_shards", logstore, None, h.list_shards) if method == "GET" else None
        if len(rest) != 1:
            return None
        target = rest[0]
        if method == "POST" and target in ("lb", "route"):
            return Route("put_logs", logstore, None, h.put_logs)
        shard = int(target) if target.isdigit() else None
        if method == "GET":
            kind = req.param("type")
            op, handler = {
                "log": ("pull_logs", h.pull_logs),
                "logs": ("pull_logs", h.pull_logs),
                "cursor": ("get_cursor", h.get_cursor),
                "cursor_time": ("get_cursor_time", h.get_cursor_time),
            }.get(kind or "", ("", None))
            return Route(op, logstore, shard, handler) if handler else None
        if method == "POST":
            action = req.param("action")
            if action == "split":
                return Route("split_shard", logstore, shard, h.split_shard)
            if action == "merge":
                return Route("merge_shard", logstore, shard, h.merge_shard)
        return None

    def _group_route(self, req: Request, logstore: str, rest: list[str]) -> Route | None:
        method, h = req.method, self.h
        if not rest:
            handler = {"GET": h.list_consumer_groups, "POST": h.create_consumer_group}.get(method)
            return Route("consumer_group", logstore, None, handler) if handler else None
        if len(rest) != 1:
            return None
        kind = req.param("type")
        if method == "POST" and kind == "heartbeat":
            return Route("heartbeat", logstore, None, h.heartbeat)
        if method == "POST" and kind == "checkpoint":
            return Route("update_check_point", logstore, None, h.update_check_point)
        if method == "GET":
            return Route("get_check_point", logstore, None, h.get_check_point)
        handler = {"PUT": h.update_consumer_group, "DELETE": h.delete_consumer_group}.get(method)
        return Route("consumer_group", logstore, None, handler) if handler else None
