"""Turn SLS logs into the projected JSON records; a log that cannot be projected becomes a `Rejected`, never an error.

Pure and per-record hot: no I/O, no logging; fields are compiled once into (source, output, coercer) tuples.
The one error is the dead-letter tolerance (`Projector.check_page`): a page whose rejects show that the
configuration fits no record is refused as a whole rather than dead-lettered.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from processor.config import FieldSpec, ProjectionConfig
from processor.errors import DeadLetterToleranceError


class _Bad(Exception):
    """Internal signal: a value cannot be coerced; the message is the reject reason.

    `hint` says what it means when every record of a page fails this way (a configuration that does not fit the
    data), for the dead-letter tolerance check.
    """

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Rejected:
    """A log that could not be projected, with why and everything needed to find and replay it."""

    reason: str
    log: dict[str, Any]
    key: bytes | None = None
    hint: str = ""


Coercer = Callable[[str, Any], Any]
# One group's projection: (key, value) pairs and the rejects.
Projected = tuple[list[tuple[bytes | None, bytes]], list[Rejected]]

# DEAD_LETTER_TOLERANCE=page: a single rejected record is no pattern (one poison log alone in a page must not
# stop the shard); two or more all failing the same way is what a configuration that fits no record looks like.
PAGE_RULE_MIN_RECORDS = 2


# Integers Kafka consumers can read back (orjson, like most JSON libraries, stops at 64 bits).
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_INT_TEXT = re.compile(r"-?[0-9]{1,20}")


def _in_range(name: str, v: int) -> int:
    if _INT_MIN <= v <= _INT_MAX:
        return v
    raise _Bad(f"field {name!r} is {_show(v)}, outside the 64-bit range")


def _int(name: str, v: Any) -> int:
    if isinstance(v, bool):
        raise _Bad(f"field {name!r} is a boolean, expected an int")
    if isinstance(v, int):
        return _in_range(name, v)
    if isinstance(v, float) and v.is_integer():
        return _in_range(name, int(v))
    if isinstance(v, str) and _INT_TEXT.fullmatch(s := v.strip()):
        return _in_range(name, int(s))
    raise _Bad(f"field {name!r} is {_show(v)}, expected an int")


def _float(name: str, v: Any) -> float:
    return float(_number(name, v))


def _number(name: str, v: Any) -> int | float:
    if isinstance(v, bool):
        raise _Bad(f"field {name!r} is a boolean, expected a number")
    if isinstance(v, int):
        return _in_range(name, v)
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        raise _Bad(f"field {name!r} is {v}, expected a finite number")
    if isinstance(v, str):
        s = v.strip()
        if _INT_TEXT.fullmatch(s):
            return _in_range(name, int(s))
        try:
            f = float(s)
        except ValueError:
            raise _Bad(f"field {name!r} is {_show(v)}, expected a number") from None
        if math.isfinite(f):
            return f
    raise _Bad(f"field {name!r} is {_show(v)}, expected a number")


def _str(name: str, v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    raise _Bad(f"field {name!r} is {_show(v)}, expected a string")


def _bool(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise _Bad(f"field {name!r} is {_show(v)}, expected true or false")


def _any(name: str, v: Any) -> Any:
    return v


COERCERS: dict[str, Coercer] = {"int": _int, "float": _float, "number": _number, "str": _str, "bool": _bool,
                                "any": _any}
# The coercer returns a value of this exact type unchanged; "float" is absent because it must check finiteness.
_PASS_THROUGH: dict[Coercer, type] = {_int: int, _number: int, _str: str, _bool: bool}


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


_MISSING = object()


class Projector:
    """Projects the logs of one log group at a time (see `project_group`)."""

    def __init__(self, config: ProjectionConfig) -> None:
        self.config = config
        self._content = [(f.source, f.output, COERCERS[f.type], f.required) for f in config.fields
                         if not f.is_metadata]
        # (source, output, coercer, required, type kept as is): a value of exactly that type needs no coercer
        # call. `type(v) is int` on purpose: bool is an int subclass and must reach the coercer's check.
        self._fast = [(src, out, coerce, required, _PASS_THROUGH.get(coerce)) for src, out, coerce, required
                      in self._content]
        self._meta = [(f, COERCERS[f.type]) for f in config.fields if f.is_metadata]
        self._json_field = config.json_field
        self._format = config.log_format
        self._key = config.key_field

    def project_group(self, group: Any) -> Projected:
        """Project every log of a protobuf LogGroup: (key, value) pairs in log order, and the rejects.

        The common shape, one content holding a JSON object (Logtail's simple mode), takes an inlined path;
        every other log, and every log that turns out bad, goes through `_project`, which words the reason.
        """
        good: list[tuple[bytes | None, bytes]] = []
        bad: list[Rejected] = []
        tags = {t.Key: t.Value for t in group.LogTags} if self._meta else None
        fast = self._format != "kv"
        json_field, key_field = self._json_field, self._key
        dumps, append = orjson.dumps, good.append
        for log in group.Logs:
            if fast:
                contents = log.Contents
                if len(contents) == 1 and (content := contents[0]).Key == json_field:
                    record = self._pick(content.Value, group, log, tags)
                    if record is not None:
                        key = record.get(key_field) if key_field else None
                        append((None if key is None else str(key).encode(), dumps(record)))
                        continue
            try:
                record = self._project(group, log, tags)
            except _Bad as exc:
                bad.append(Rejected(str(exc), original_log(group, log), None, exc.hint))
                continue
            key = record.get(key_field) if key_field else None
            append((None if key is None else str(key).encode(), dumps(record)))
        return good, bad

    def check_page(self, page: Sequence[Projected], where: str) -> None:
        """Raise DeadLetterToleranceError when a page's rejects pass DEAD_LETTER_TOLERANCE; `where` names the page.

        Called before anything of the page is produced, so a refused page is neither delivered nor checkpointed.
        """
        tolerance = self.config.dead_letter_tolerance
        if tolerance == "all" or not any(bad for _, bad in page):
            return
        rejected = [r for _, bad in page for r in bad]
        if tolerance == "none":
            msg = (f"{len(rejected)} record(s) of {where} cannot be projected, the first because {rejected[0].reason}; "
                   "DEAD_LETTER_TOLERANCE=none stops at any reject (page or all would dead-letter it)")
            raise DeadLetterToleranceError(msg)
        if len(rejected) < PAGE_RULE_MIN_RECORDS or any(good for good, _ in page):
            return
        reason = rejected[0].reason
        if any(r.reason != reason for r in rejected):
            return
        hint = rejected[0].hint or (f"every record was rejected because {reason}: check PROJECTION_FIELDS, "
                                    "LOG_FORMAT and LOG_JSON_FIELD")
        msg = (f"{hint} (all {len(rejected)} records of {where} were rejected for this one reason, so none was "
               "produced or dead-lettered and the checkpoint stays before them; DEAD_LETTER_TOLERANCE=all would "
               "dead-letter such a page)")
        raise DeadLetterToleranceError(msg)

    def _pick(self, text: str | bytes, group: Any, log: Any, tags: dict[str, Any] | None) -> dict[str, Any] | None:
        """The projected record of a JSON document, or None when anything is off (`_project` says what)."""
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        if type(doc) is not dict:
            return None
        out: dict[str, Any] = {}
        try:
            for src, name, coerce, required, exact in self._fast:
                v = doc.get(src)
                if v is None:
                    if required:
                        return None
                else:
                    out[name] = v if type(v) is exact else coerce(src, v)
            if self._meta:
                self._add_metadata(out, group, log, tags)
        except _Bad:
            return None
        return out

    def _project(self, group: Any, log: Any, tags: dict[str, Any] | None) -> dict[str, Any]:
        # upb hands a string that is not UTF-8 over as bytes, and LogGroupRaw every content value. Only projected
        # values must be text, so they are decoded where picked; a key that is not UTF-8 matches no field.
        doc = self._document({c.Key: c.Value for c in log.Contents})
        out: dict[str, Any] = {}
        for src, name, coerce, required in self._content:
            v = doc.get(src, _MISSING)
            if v is _MISSING or v is None:
                if not required:
                    continue
                if v is _MISSING:
                    raise _Bad(f"required field {src!r} is missing",
                               f"every record lacks required field {src!r}: check PROJECTION_FIELDS")
                raise _Bad(f"required field {src!r} is null")
            if type(v) is bytes:
                v = _utf8(v, f"field {src!r}")
            out[name] = coerce(src, v)
        self._add_metadata(out, group, log, tags)
        return out

    def _add_metadata(self, out: dict[str, Any], group: Any, log: Any, tags: dict[str, Any] | None) -> None:
        for spec, coerce in self._meta:
            v = _metadata(spec, group, log, tags)
            if v is _MISSING:
                if spec.required:
                    raise _Bad(f"required metadata {spec.source!r} is missing",
                               f"no record has metadata {spec.source!r}: check PROJECTION_FIELDS")
                continue
            if type(v) is bytes:
                v = _utf8(v, f"metadata {spec.source!r}")
            out[spec.output] = coerce(spec.source, v)

    def _document(self, contents: dict[Any, str | bytes]) -> dict[Any, Any]:
        if self._format == "kv":
            return contents
        text = contents.get(self._json_field)
        if text is None:
            if self._format == "json":
                raise _Bad(f"content field {self._json_field!r} holding the JSON document is missing",
                           f"no record has the content field {self._json_field!r}: check LOG_FORMAT and "
                           "LOG_JSON_FIELD")
            return contents
        if type(text) is bytes:
            text = _utf8(text, f"content field {self._json_field!r}")
        if not text.strip():
            raise _Bad(f"content field {self._json_field!r} is empty")
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise _Bad(f"content field {self._json_field!r} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise _Bad(f"content field {self._json_field!r} is JSON {type(doc).__name__}, expected an object")
        return doc


def _utf8(value: bytes | str, what: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(f"{what} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def _metadata(spec: FieldSpec, group: Any, log: Any, tags: dict[str, Any] | None) -> Any:
    src = spec.source
    if src == "__time__":
        return log.Time
    if src == "__time_ns__":
        return log.Time_ns if log.HasField("Time_ns") else _MISSING
    if src == "__topic__":
        return group.Topic if group.HasField("Topic") else _MISSING
    if src == "__source__":
        return group.Source if group.HasField("Source") else _MISSING
    return tags.get(src[len("__tag__:"):], _MISSING) if tags is not None else _MISSING


def original_log(group: Any, log: Any) -> dict[str, Any]:
    """The log as SLS holds it, for the dead-letter record; bytes that are not UTF-8 are kept as base64."""
    out: dict[str, Any] = {"__time__": log.Time}
    if log.HasField("Time_ns"):
        out["__time_ns__"] = log.Time_ns
    if group.HasField("Topic"):
        out["__topic__"] = _text_or_b64(group.Topic)
    if group.HasField("Source"):
        out["__source__"] = _text_or_b64(group.Source)
    out["contents"] = [[_text_or_b64(c.Key), _text_or_b64(c.Value)] for c in log.Contents]
    out["tags"] = {_text_or_b64(t.Key): _text_or_b64(t.Value) for t in group.LogTags}
    return out


def _text_or_b64(value: bytes | str) -> Any:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}
