"""The SLS trigger event: one shard's cursor range, [beginCursor, endCursor).

An example of the JSON is `processor.commands.invoke.EVENT_EXAMPLE` (shown by `sls-kafka invoke --help` and the
README, and tested to parse here); `sls-kafka event --shard N` prints a real one for a shard's current range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from common.cursors import cursor_position
from common.errors import EventError


def _position(cursor: str, name: str) -> int:
    return cursor_position(cursor, name, EventError)


@dataclass(frozen=True)
class TriggerEvent:
    endpoint: str
    project: str
    logstore: str
    shard: int
    begin_cursor: str
    end_cursor: str
    parameter: dict[str, Any] = field(default_factory=dict)
    job_name: str = ""
    task_id: str = ""
    cursor_time: int | None = None

    @classmethod
    def from_json(cls, raw: bytes | str | dict[str, Any]) -> TriggerEvent:
        if isinstance(raw, dict):
            doc: Any = raw
        else:
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                msg = f"event is not JSON ({exc}); an SLS trigger sends a JSON object with a 'source' field"
                raise EventError(msg) from None
        if not isinstance(doc, dict):
            msg = f"event must be a JSON object, got {type(doc).__name__}"
            raise EventError(msg)
        source = doc.get("source")
        if not isinstance(source, dict):
            msg = "event field 'source' is missing or not an object" if source is None else \
                f"event field 'source' must be an object, got {type(source).__name__}"
            raise EventError(msg)
        begin = _string(source, "beginCursor")
        end = _string(source, "endCursor")
        if _position(begin, "source.beginCursor") > _position(end, "source.endCursor"):
            msg = f"event range is reversed: source.beginCursor {begin!r} lies after source.endCursor {end!r}"
            raise EventError(msg)
        parameter = doc.get("parameter", {})
        if parameter is None:
            parameter = {}
        if not isinstance(parameter, dict):
            msg = f"event field 'parameter' must be an object, got {type(parameter).__name__}"
            raise EventError(msg)
        cursor_time = doc.get("cursorTime")
        if cursor_time is not None and (isinstance(cursor_time, bool) or not isinstance(cursor_time, int)):
            msg = f"event field 'cursorTime' must be unix seconds (an integer), got {cursor_time!r}"
            raise EventError(msg)
        return cls(
            endpoint=_string(source, "endpoint"),
            project=_string(source, "projectName"),
            logstore=_string(source, "logstoreName"),
            shard=_shard(source),
            begin_cursor=begin,
            end_cursor=end,
            parameter=parameter,
            job_name=_optional_string(doc, "jobName"),
            task_id=_optional_string(doc, "taskId"),
            cursor_time=cursor_time,
        )

    def to_dict(self) -> dict[str, Any]:
        """The event in the trigger's own JSON shape (what `from_json` reads)."""
        doc: dict[str, Any] = {
            "parameter": self.parameter,
            "source": {
                "endpoint": self.endpoint,
                "projectName": self.project,
                "logstoreName": self.logstore,
                "shardId": self.shard,
                "beginCursor": self.begin_cursor,
                "endCursor": self.end_cursor,
            },
            "jobName": self.job_name,
            "taskId": self.task_id,
        }
        if self.cursor_time is not None:
            doc["cursorTime"] = self.cursor_time
        return doc


def _string(source: dict[str, Any], key: str) -> str:
    value = source.get(key)
    if value is None:
        msg = f"event field 'source.{key}' is missing"
        raise EventError(msg)
    if not isinstance(value, str) or not value.strip():
        msg = f"event field 'source.{key}' must be a non-empty string, got {value!r}"
        raise EventError(msg)
    return value.strip()


def _optional_string(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str):
        msg = f"event field '{key}' must be a string, got {value!r}"
        raise EventError(msg)
    return value


def _shard(source: dict[str, Any]) -> int:
    value = source.get("shardId")
    if value is None:
        msg = "event field 'source.shardId' is missing"
        raise EventError(msg)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"event field 'source.shardId' must be a non-negative integer, got {value!r}"
        raise EventError(msg)
    return value
