"""Wire encodings: cursors, LogGroup framing and validation, body compression."""

from __future__ import annotations

import base64
import binascii
import zlib

import lz4.block
import zstd
from google.protobuf.message import DecodeError

from .errors import SlsError
from .logproto import LogGroup

# Compression names as they appear in x-log-compresstype / Accept-Encoding.
LZ4, ZSTD, DEFLATE, NONE = "lz4", "zstd", "deflate", ""
_ACCEPTED = (LZ4, ZSTD, DEFLATE)


def encode_cursor(position: int) -> str:
    """SLS cursors are base64 of the decimal position."""
    return base64.b64encode(str(position).encode()).decode()


def decode_cursor(cursor: str) -> int:
    """Inverse of `encode_cursor`; tolerant of missing padding and the SDK's trailing newline.

    Raises ValueError for anything that is not base64 of a non-negative decimal integer.
    """
    text = cursor.strip()
    try:
        digits = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = f"not base64: {exc}"
        raise ValueError(msg) from exc
    if not digits.isdigit():
        msg = "not base64 of a decimal integer"
        raise ValueError(msg)
    return int(digits)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def frame_group(group: bytes) -> bytes:
    """Wrap one serialized LogGroup as field 1 of LogGroupList, so a pull body is a plain concatenation."""
    return _length_delimited(1, group)


def append_tags(group: bytes, tags: list[tuple[str, str]]) -> bytes:
    """Add LogTags (field 6) to a serialized LogGroup; appending repeated fields is valid protobuf."""
    extra = b"".join(
        _length_delimited(6, _length_delimited(1, k.encode()) + _length_delimited(2, v.encode())) for k, v in tags
    )
    return group + extra


def validate_log_group(group: bytes) -> int:
    """Validate a serialized LogGroup against the schema and return its number of logs."""
    msg = LogGroup()
    try:
        msg.ParseFromString(group)
    except DecodeError as exc:
        raise SlsError("PostBodyInvalid", f"log group is not valid protobuf: {exc}") from exc
    missing = msg.FindInitializationErrors()
    if missing:
        raise SlsError("PostBodyInvalid", f"log group misses required fields: {', '.join(missing[:5])}")
    return len(msg.Logs)


def decompress_body(body: bytes, compress_type: str, raw_size: int) -> bytes:
    """Undo the client's compression of a PutLogs body (x-log-compresstype, x-log-bodyrawsize)."""
    kind = compress_type.strip().lower()
    try:
        if kind == NONE:
            data = body
        elif kind == LZ4:
            data = lz4.block.decompress(body, uncompressed_size=raw_size)
        elif kind == ZSTD:
            data = zstd.decompress(body)
        elif kind in (DEFLATE, "gzip"):
            data = zlib.decompress(body)
        else:
            raise SlsError("PostBodyUncompressError", f"unsupported x-log-compresstype {compress_type!r}")
    except (lz4.block.LZ4BlockError, zstd.Error, zlib.error, ValueError) as exc:
        raise SlsError("PostBodyUncompressError", f"cannot decompress {kind} body: {exc}") from exc
    if kind != NONE and len(data) != raw_size:
        msg = f"decompressed size {len(data)} differs from x-log-bodyrawsize {raw_size}"
        raise SlsError("PostBodyUncompressError", msg)
    return data


def choose_encoding(accept_encoding: str) -> str:
    """Pick the response compression from Accept-Encoding: the first one SLS supports, else none."""
    for token in accept_encoding.split(","):
        name = token.split(";")[0].strip().lower()
        if name in _ACCEPTED:
            return name
    return NONE


def compress_body(data: bytes, kind: str) -> bytes:
    """Compress a pull response; lz4 is a raw block without the size prefix, as the SDK expects."""
    if kind == LZ4:
        return lz4.block.compress(data, store_size=False)
    if kind == ZSTD:
        return zstd.compress(data, 1)
    if kind == DEFLATE:
        return zlib.compress(data, 1)
    return data
