"""Check a method's output topic against the data set: every record there once, keyed right, nothing else.

Records are streamed and folded into the same order-free fingerprint as `dataset.Expected`, so checking
millions of records needs no memory to speak of. Values are compared as compact JSON, which lets the lesson's
`json.dumps` spacing pass while any change of content fails.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from bench.dataset import Expected

_BATCH = 10_000


@dataclass
class Verdict:
    records: int
    expected_records: int
    digest_matches: bool
    bad_keys: int
    ok: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def verify(bootstrap: str, topic: str, expected: Expected, keyed: bool, timeout: float = 300.0) -> Verdict:
    """Read all of `topic` (read_committed) and compare it with `expected`.

    With `keyed`, every record's key must be its carID; without, records must have no key (the lesson's).
    """
    got = Expected()
    bad_keys = 0
    for key, value in _read(bootstrap, topic, timeout):
        doc = orjson.loads(value)
        got.add(orjson.dumps(doc))
        want = str(doc.get("carID")).encode() if keyed else None
        bad_keys += key != want
    digest_ok = got.digest == expected.digest
    ok = got.records == expected.records and digest_ok and bad_keys == 0
    return Verdict(got.records, expected.records, digest_ok, bad_keys, ok)


def count(bootstrap: str, topic: str, timeout: float = 60.0) -> int:
    """Records readable in `topic` (read_committed), e.g. to check that a dead-letter topic stayed empty."""
    return sum(1 for _ in _read(bootstrap, topic, timeout))


def _read(bootstrap: str, topic: str, timeout: float) -> Iterator[tuple[bytes | None, bytes]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-verify-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed", "max.partition.fetch.bytes": 8 << 20,
                         "fetch.wait.max.ms": 50})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            msg = f"cannot read topic {topic!r}: {meta.error if meta else 'not found'}"
            raise RuntimeError(msg)
        partitions = set(meta.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        # The method has finished: reaching the end of every partition once means everything was read.
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while at_end != partitions:
            if time.monotonic() > deadline:
                msg = f"reading {topic!r} took over {timeout:.0f}s"
                raise TimeoutError(msg)
            for message in consumer.consume(_BATCH, 0.5):
                err = message.error()
                if err is None:
                    yield message.key(), message.value()
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                else:
                    raise KafkaException(err)
    finally:
        consumer.close()
