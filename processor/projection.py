"""Turn SLS logs into the projected JSON records; a log that cannot be projected becomes a `Rejected`, never an error.

Pure and per-record hot: no I/O, no logging; fields are compiled once into (source, output, coercer) tuples.
A group is projected a column at a time (`Projector._columns`): every value of one field is read, checked and
coerced by C-level loops (`map`, `operator` getters, one JSON parse of a column of number texts), so the
per-record Python cost does not grow with the number of fields. Any group that does not fit that shape exactly
(a poison value, a missing or repeated field, mixed layouts) is projected again one log at a time, which words
every reject; the two paths give the same records.
The one error is the dead-letter tolerance (`Projector.check_page`): a page whose rejects show that the
configuration fits no record is refused as a whole rather than dead-lettered.
Long on purpose: the column path and the per-log path must give the same records and the same reasons, and
are kept side by side so that a change to one is seen against the other.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter, itemgetter, methodcaller
from typing import Any

import orjson

from common.errors import DeadLetterToleranceError
from processor.config import FieldSpec, ProjectionConfig


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
    index: int = -1  # the log's position in its group


@dataclass(frozen=True, slots=True)
class Columns:
    """A group's projected values by output field, one per record (None where the record leaves the field out),
    and each log's `__time__`."""

    fields: dict[str, list[Any]]
    times: list[int]


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

_CONTENTS, _KEY, _VALUE = attrgetter("Contents"), attrgetter("Key"), attrgetter("Value")
_TIME, _TIME_NS, _HAS_TIME_NS = attrgetter("Time"), attrgetter("Time_ns"), methodcaller("HasField", "Time_ns")
_FIRST = itemgetter(0)


class _Irregular(Exception):
    """Internal signal: this group does not fit the column path; project it one log at a time."""


def _content_marker(key: str) -> bytes:
    """How a Content (or LogTag) with this key starts in a serialized LogGroup: Key (field 1), then Value's tag.

    upb writes fields in number order, so every content with this key contains these bytes; counting them in
    the serialized group bounds how often the key occurs (more, never fewer: a value may contain them too).
    """
    raw = key.encode()
    size, length = len(raw), b""
    while size >= 0x80:
        length += bytes((size & 0x7F | 0x80,))
        size >>= 7
    return b"\n" + length + bytes((size,)) + raw + b"\x12"


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
        # Output names in the order `_project` adds them: content fields, then metadata.
        self._names = tuple([out for _, out, _, _ in self._content] + [spec.output for spec, _ in self._meta])
        self._markers = {src: _content_marker(src) for src, _, _, _ in self._content}
        self._json_marker = _content_marker(config.json_field)

    def project_group(self, group: Any) -> Projected:
        """Project every log of a protobuf LogGroup (or LogGroupRaw): (key, value) pairs in log order, and rejects.

        A group all of whose logs share one layout (the SDK's and Logtail's groups do) goes through the column
        path; any other, and any group with a log that turns out bad, goes one log at a time.
        """
        return self._project_group(group, False)[0]

    def project_with_columns(self, group: Any) -> tuple[Projected, Columns | None]:
        """`project_group`, plus the group's columns when it went the column path (None when it went one log at
        a time): the alert observer reads them instead of parsing every record it was just given again."""
        return self._project_group(group, True)

    def _project_group(self, group: Any, columns: bool) -> tuple[Projected, Columns | None]:
        logs = group.Logs
        if logs:
            try:
                logs = list(logs)  # one Python object per log, shared by every column
                good, fields = self._columns(group, logs)
                return (good, []), Columns(fields, list(map(_TIME, logs))) if columns else None
            # The column path meets bad values as whatever `map` raises first; the per-log path names them.
            except (_Irregular, _Bad, orjson.JSONDecodeError, UnicodeDecodeError, IndexError, TypeError,
                    ValueError, OverflowError):
                pass
        return self._one_by_one(group), None

    def _columns(self, group: Any, logs: list[Any]) -> tuple[list[tuple[bytes | None, bytes]], dict[str, list[Any]]]:
        """Every record of the group, built column by column, and the columns; raises when any log would be
        rejected or differs."""
        n = len(logs)
        contents = list(map(_CONTENTS, logs))
        firsts = None
        if self._format != "kv" and set(map(len, contents)) == {1}:
            firsts = list(map(_FIRST, contents))
            if set(map(_KEY, firsts)) != {self._json_field}:
                firsts = None
        if firsts is not None:
            columns = self._json_columns(firsts)
        elif self._format == "json":
            raise _Irregular
        else:
            columns = self._kv_columns(group, contents, n)
        columns += self._meta_columns(group, logs, n)
        names = tuple(name for name, _ in columns)
        if not names:
            raise _Irregular
        cols = [col for _, col in columns]
        if any(None in col for col in cols):
            # An optional field that is absent or null in some logs: those records leave it out.
            records = list(map(dict, map(zip, repeat(names), zip(*cols, strict=True))))
            for name, col in columns:
                if None in col:
                    for record in records:
                        if record[name] is None:
                            del record[name]
            values = list(map(orjson.dumps, records))
        else:
            values = _json_objects(names, cols, n)
        by_name = dict(columns)
        if not self._key or self._key not in names:
            return list(zip(repeat(None), values)), by_name
        keys = by_name[self._key]
        if None in keys:
            encoded = [None if k is None else str(k).encode() for k in keys]
        else:
            encoded = list(map(str.encode, map(str, keys)))
        return list(zip(encoded, values, strict=True)), by_name

    def _json_columns(self, firsts: list[Any]) -> list[tuple[str, list[Any]]]:
        docs = list(map(orjson.loads, map(_VALUE, firsts)))
        get = dict.get  # a document that is not an object raises TypeError here
        return [(out, col) for src, out, coerce, required in self._content
                if (col := _coerced(src, coerce, required, list(map(get, docs, repeat(src))))) is not None]

    def _kv_columns(self, group: Any, contents: list[Any], n: int) -> list[tuple[str, list[Any]]]:
        """Columns of one-content-per-field logs, read by position: where the first log holds each field.

        Exact only if every log holds each projected key once, at that position: the key is checked at the
        position in every log, and its marker counted in the serialized group (a repeat anywhere shows there).
        """
        data = group.SerializeToString()
        if self._format == "auto" and self._json_marker in data:
            raise _Irregular  # some log may hold a JSON document: `_document` would parse it
        position = {key: i for i, key in enumerate(map(_KEY, contents[0]))}
        columns = []
        for src, out, coerce, required in self._content:
            i = position.get(src)
            if i is None:
                if required or self._markers[src] in data:
                    raise _Irregular
                continue
            at = list(map(itemgetter(i), contents))
            if list(map(_KEY, at)).count(src) != n or data.count(self._markers[src]) != n:
                raise _Irregular
            col = list(map(_VALUE, at))
            if bytes in set(map(type, col)):
                col = list(map(bytes.decode, col))  # LogGroupRaw; upb's bytes are never UTF-8 and raise
            columns.append((out, _coerced(src, coerce, required, col)))
        return columns

    def _meta_columns(self, group: Any, logs: Any, n: int) -> list[tuple[str, list[Any]]]:
        columns: list[tuple[str, list[Any]]] = []
        if not self._meta:
            return columns
        tags = {t.Key: t.Value for t in group.LogTags}
        for spec, coerce in self._meta:
            if spec.source == "__time__":
                col = list(map(_TIME, logs))
            elif spec.source == "__time_ns__":
                has = set(map(_HAS_TIME_NS, logs))
                if has != {True}:
                    if spec.required or has != {False}:
                        raise _Irregular
                    continue
                col = list(map(_TIME_NS, logs))
            else:
                v = _metadata(spec, group, None, tags)
                if v is _MISSING:
                    if spec.required:
                        raise _Irregular
                    continue
                col = [_utf8(v, "") if type(v) is bytes else v] * n
            columns.append((spec.output, _coerced(spec.source, coerce, True, col)))
        return columns

    def _one_by_one(self, group: Any) -> Projected:
        """Project every log of a group on its own; the common JSON shape takes an inlined path (`_pick`)."""
        good: list[tuple[bytes | None, bytes]] = []
        bad: list[Rejected] = []
        tags = {t.Key: t.Value for t in group.LogTags} if self._meta else None
        fast = self._format != "kv"
        json_field, key_field = self._json_field, self._key
        dumps, append = orjson.dumps, good.append
        for index, log in enumerate(group.Logs):
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
                bad.append(Rejected(str(exc), original_log(group, log), None, exc.hint, index))
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


def _json_objects(names: tuple[str, ...], cols: list[list[Any]], n: int) -> list[bytes]:
    """What `orjson.dumps` gives for each record {names[0]: cols[0][i], ...}, built from one dump per column.

    A dump per record costs far more than its size says: orjson starts every output in a 1 KiB buffer that
    malloc serves, and 4,096 of them per group made it half the projection's time. Here each column is dumped
    once as a JSON array and split (a number or boolean holds no comma; a string cannot hold the `","`
    that separates strings, its quotes being escaped), and each record is joined from its pieces.
    """
    pieces: list[Any] = []
    before = b"{"
    for i, (name, col) in enumerate(zip(names, cols, strict=True)):
        before += (b"," if i else b"") + orjson.dumps(name) + b":"
        kinds = set(map(type, col))
        if kinds <= {int, float, bool}:
            texts, quote = orjson.dumps(col)[1:-1].split(b","), b""
        elif kinds == {str}:
            texts, quote = orjson.dumps(col)[2:-2].split(b'","'), b'"'
        else:
            texts, quote = list(map(orjson.dumps, col)), b""
        if len(texts) != n:
            raise _Irregular
        pieces += (repeat(before + quote), texts)
        before = quote
    pieces.append(repeat(before + b"}"))
    return list(map(b"".join, zip(*pieces, strict=False)))  # the constant pieces repeat without end


def _coerced(src: str, coerce: Coercer, required: bool, col: list[Any]) -> list[Any]:
    """`col` coerced as `coerce` would each value; raises `_Bad` (or what `int` raises) where one log differs."""
    if None in col:
        if required:
            raise _Irregular
        return [v if v is None else coerce(src, v) for v in col]
    types = set(map(type, col))
    if len(types) == 1:
        kind = types.pop()
        if kind is _PASS_THROUGH.get(coerce):
            if kind is int and (min(col) < _INT_MIN or max(col) > _INT_MAX):
                raise _Irregular
            return col
        if kind is str and coerce is _any:
            return col
        if kind is str and (coerce is _int or coerce is _number or coerce is _float):
            numbers = _number_texts(col, coerce)
            if numbers is not None:
                return numbers
    return list(map(coerce, repeat(src), col))


def _number_texts(col: list[str], coerce: Coercer) -> list[Any] | None:
    """Texts of numbers (key/value contents) parsed as one JSON array, or None where a coercer might differ.

    Each text must then hold exactly one JSON number between JSON whitespace, all of which `str.strip` removes
    too: a comma or bracket changes the count or the types, an empty text breaks the array. A JSON integer is
    what `_INT_TEXT` matches; orjson hands an integer beyond 64 bits over as a float, which a text of at most
    18 characters cannot hold.
    """
    try:
        numbers = orjson.loads("[" + ",".join(col) + "]")
    except orjson.JSONDecodeError:
        return None
    if len(numbers) != len(col):
        return None
    kinds = set(map(type, numbers))
    if kinds == {int}:
        if min(numbers) < _INT_MIN or max(numbers) > _INT_MAX:
            return None
    elif coerce is _int or not kinds <= {int, float} or max(map(len, col)) > 18:
        return None
    return list(map(float, numbers)) if coerce is _float else numbers


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
