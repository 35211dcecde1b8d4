"""Dead-letter records: the original log, why it was rejected, and where it came from."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

# A rejected log can be huge (that may be why it was rejected); the DLQ must still accept the record. The cap
# is on the original's encoded size in the record, whatever the escaping.
MAX_ORIGINAL_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Provenance:
    project: str
    logstore: str
    shard: int
    cursor: str
    group: int

    def headers(self) -> list[tuple[str, bytes]]:
        return [("sls.project", self.project.encode()), ("sls.logstore", self.logstore.encode()),
                ("sls.shard", str(self.shard).encode()), ("sls.cursor", self.cursor.encode()),
                ("sls.group", str(self.group).encode())]


def dead_letter_value(reason: str, original: Any, where: Provenance, target_topic: str) -> bytes:
    """The DLQ record: `original` is the SLS log (a dict) or the bytes Kafka refused."""
    doc: dict[str, Any] = {
        "reason": reason,
        "source": {"project": where.project, "logstore": where.logstore, "shard": where.shard,
                   "cursor": where.cursor, "group": where.group},
        "target_topic": target_topic,
        "rejected_at": time.time(),
    }
    body = bytes(original) if isinstance(original, (bytes, bytearray)) else orjson.dumps(original)
    if isinstance(original, (bytes, bytearray)) or len(body) > MAX_ORIGINAL_BYTES:
        kept = _kept_bytes(body)
        if kept < len(body):
            doc["original_truncated"] = {"size": len(body), "kept": kept}
        doc["original_text"] = body[:kept].decode("utf-8", "replace")
    else:
        doc["original"] = original
    return orjson.dumps(doc)


def _encoded_size(raw: bytes) -> int:
    """Bytes `raw` takes in the record as a JSON string: escapes and U+FFFD for bytes that are not UTF-8."""
    return len(orjson.dumps(raw.decode("utf-8", "replace"))) - 2


def _kept_bytes(body: bytes) -> int:
    """The longest prefix of `body` whose encoded text fits MAX_ORIGINAL_BYTES.

    The cap must hold on the encoded size: quotes and backslashes double, control characters take six bytes
    and a byte that is not UTF-8 three, so a raw cut at the cap could make a record several times larger.
    """
    # Encoding never shrinks the bytes (U+FFFD replaces at most three), so a longer body is cut without a look.
    if len(body) <= MAX_ORIGINAL_BYTES and _encoded_size(body) <= MAX_ORIGINAL_BYTES:
        return len(body)
    fits, too_long = 0, min(len(body), MAX_ORIGINAL_BYTES) + 1
    while too_long - fits > 1:
        mid = (fits + too_long) // 2
        if _encoded_size(body[:mid]) <= MAX_ORIGINAL_BYTES:
            fits = mid
        else:
            too_long = mid
    return fits
