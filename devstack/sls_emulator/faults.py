"""Run-time fault injection: the next N matching requests fail, stall or lose their connection.

Actions: ``error`` (an SLS error, e.g. 500 InternalServerError or 403 ShardReadQuotaExceed), ``delay``
(sleep, then serve), ``drop`` (close without answering) and ``truncate`` (serve half the body, then close).
Through an HTTP proxy, requests reports a dropped connection as a connection-pool error, which the SDK's
``_send`` retries (10 tries, 1 s apart); a truncated body is a plain LogRequestError it does not retry.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import STATUS_BY_CODE, SlsError

ERROR, DELAY, DROP, TRUNCATE = "error", "delay", "drop", "truncate"
ACTIONS = (ERROR, DELAY, DROP, TRUNCATE)
# Operation names a fault can target; "any" matches every SLS request (admin requests are never hit).
OPERATIONS = (
    "any",
    "pull_logs",
    "get_cursor",
    "get_cursor_time",
    "list_shards",
    "put_logs",
    "split_shard",
    "merge_shard",
    "consumer_group",
    "heartbeat",
    "update_check_point",
    "get_check_point",
    "project",
    "logstore",
)
# The messages real SLS sends for the throttling codes.
_DEFAULT_MESSAGES = {
    "InternalServerError": "internal server error",
    "ServerBusy": "server is busy, please try again later",
    "ReadQuotaExceed": "Read QPS Exceed",
    "ShardReadQuotaExceed": "shard read qps exceed quota limits",
    "WriteQuotaExceed": "Write QPS Exceed",
    "ShardWriteQuotaExceed": "shard write quota exceed",
}


@dataclass
class Fault:
    """One rule: what to do to the next ``times`` requests matching ``op`` and the optional filters."""

    op: str = "any"
    action: str = ERROR
    times: int = 1
    code: str | None = None  # error only; defaults to InternalServerError
    message: str = ""
    status: int | None = None
    delay_s: float = 0.0
    project: str | None = None
    logstore: str | None = None
    shard: int | None = None

    def __post_init__(self) -> None:
        if self.op not in OPERATIONS:
            msg = f"fault op {self.op!r} is not one of {', '.join(OPERATIONS)}"
            raise ValueError(msg)
        if self.action not in ACTIONS:
            msg = f"fault action {self.action!r} is not one of {', '.join(ACTIONS)}"
            raise ValueError(msg)
        if self.times < 1:
            msg = f"fault times {self.times} must be >= 1"
            raise ValueError(msg)
        if self.action == ERROR:
            self.code = self.code or "InternalServerError"
            self.status = self.status or STATUS_BY_CODE.get(self.code, 500)
            self.message = self.message or _DEFAULT_MESSAGES.get(self.code, self.code)

    def matches(self, op: str, project: str, logstore: str, shard: int | None) -> bool:
        """Whether a request falls under this rule."""
        return (
            self.op in ("any", op)
            and self.project in (None, project)
            and self.logstore in (None, logstore)
            and self.shard in (None, shard)
        )

    def error(self) -> SlsError:
        """The error to answer for an ``error`` fault."""
        return SlsError(self.code or "InternalServerError", self.message, self.status)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Fault:
        """Build from the admin endpoint's JSON, rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            msg = f"unknown fault keys {sorted(unknown)}; known: {sorted(known)}"
            raise ValueError(msg)
        return cls(**doc)


class FaultInjector:
    """Thread-safe queue of fault rules, consumed first-added first."""

    def __init__(self) -> None:
        self._rules: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        """Queue a rule and return it."""
        with self._lock:
            self._rules.append(fault)
        return fault

    def error(self, op: str = "any", code: str = "InternalServerError", times: int = 1, **filters: Any) -> Fault:
        """Answer the next ``times`` matching requests with SLS error ``code`` (status from the code table)."""
        return self.add(Fault(op=op, action=ERROR, code=code, times=times, **filters))

    def delay(self, op: str = "any", seconds: float = 1.0, times: int = 1, **filters: Any) -> Fault:
        """Stall the next ``times`` matching requests by ``seconds`` before serving them normally."""
        return self.add(Fault(op=op, action=DELAY, delay_s=seconds, times=times, **filters))

    def drop(self, op: str = "any", times: int = 1, **filters: Any) -> Fault:
        """Close the connection of the next ``times`` matching requests without answering."""
        return self.add(Fault(op=op, action=DROP, times=times, **filters))

    def truncate(self, op: str = "any", times: int = 1, **filters: Any) -> Fault:
        """Serve the next ``times`` matching requests with half their body, then close the connection."""
        return self.add(Fault(op=op, action=TRUNCATE, times=times, **filters))

    def take(self, op: str, project: str, logstore: str, shard: int | None) -> Fault | None:
        """Consume one use of the first rule matching this request, if any."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(op, project, logstore, shard):
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def pending(self) -> list[dict[str, Any]]:
        """Remaining rules with their remaining counts."""
        with self._lock:
            return [asdict(rule) for rule in self._rules]

    def clear(self) -> None:
        """Drop all rules."""
        with self._lock:
            self._rules.clear()
