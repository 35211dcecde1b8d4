"""The dead-letter record's copy of the original stays within MAX_ORIGINAL_BYTES once encoded as JSON."""

import orjson
import pytest

from processor.dead_letter import MAX_ORIGINAL_BYTES, Provenance, dead_letter_value

WHERE = Provenance("demo", "driving", 0, "MTAw", 3)
# reason, source, target topic and timestamps around the original
ENVELOPE = 1024


@pytest.mark.parametrize(
    "original",
    [
        b'"' * 200_000,  # under the cap raw, each quote escaped to two bytes
        b"\\" * 300_000,
        b"\x00" * 300_000,  # control characters: six bytes each (\u0000)
        b"\xff" * 300_000,  # not UTF-8: each byte becomes U+FFFD, three bytes
        {"contents": [["driver", '"quoted"' * 40_000]]},  # a log whose JSON is re-escaped as text
        {"contents": [["note", "\x01" * 100_000]]},
    ],
    ids=["quotes", "backslashes", "nul", "invalid-utf8", "log-with-quotes", "log-with-control-chars"],
)
def test_encoded_original_never_passes_the_cap(original):
    value = dead_letter_value("too big", original, WHERE, "vehicles")
    assert len(value) <= MAX_ORIGINAL_BYTES + ENVELOPE
    doc = orjson.loads(value)
    text = doc["original_text"]
    assert len(orjson.dumps(text)) - 2 <= MAX_ORIGINAL_BYTES
    raw = original if isinstance(original, bytes) else orjson.dumps(original)
    # What is kept is the start of the original, and says how much of it that is.
    assert raw[:doc["original_truncated"]["kept"]].decode("utf-8", "replace") == text
    assert doc["original_truncated"]["size"] == len(raw)
    assert doc["original_truncated"]["kept"] > 0


def test_original_within_the_cap_is_kept_whole():
    log = {"contents": [["speed", "12.5"], ["carID", "7"]], "__topic__": ""}
    doc = orjson.loads(dead_letter_value("bad type", log, WHERE, "vehicles"))
    assert doc["original"] == log
    assert "original_truncated" not in doc
    refused = b'{"speed": 1}'
    doc = orjson.loads(dead_letter_value("refused", refused, WHERE, "vehicles"))
    assert doc["original_text"] == refused.decode()
    assert "original_truncated" not in doc
