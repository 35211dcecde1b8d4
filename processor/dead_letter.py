"""Dead-letter records: the original log, why it was rejected, and where it came from."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

# A rejected log can be huge (that may be why it was rejected); the DLQ must still accept the record.
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
    body = original if isinstance(original, (bytes, bytearray)) else orjson.dumps(original)
    if len(body) > MAX_ORIGINAL_BYTES:
        doc["original_truncated"] = {"size": len(body), "kept": MAX_ORIGINAL_BYTES}
        body = body[:MAX_ORIGINAL_BYTES]
    if isinstance(original, (bytes, bytearray)) or "original_truncated" in doc:
        doc["original_text"] = bytes(body).decode("utf-8", "replace")
    else:
        doc["original"] = original
    return orjson.dumps(doc)
