"""The demo's Kafka side: where this run's records start, reading them back, and the exact multiset check."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from devstack.sample_data import Written

LESSON_RECORDS = (b'{"speed":12,"carID":1234}', b'{"speed":24,"carID":3512}')


def report(bootstrap: str, topic: str, dlq: str, starts: dict[str, dict[int, int]], written: Written) -> bool:
    """Print what this run delivered and whether it is exactly what was written."""
    expected, poison = written.expected, written.poison
    records = read(bootstrap, topic, starts[topic])
    dead = read(bootstrap, dlq, starts[dlq])
    got = Counter(value for _, value in records)
    print(f"== Kafka topic {topic}: {len(records)} records from this run (read_committed)")
    for key, value in records[:3]:
        print(f"   key={key.decode() if key else None} value={value.decode()}")
    lesson = [v.decode() for _, v in records if v in LESSON_RECORDS]
    print(f"   the lesson's two lines arrived as: {sorted(set(lesson))}")
    print(f"== dead-letter topic {dlq}: {len(dead)} records from this run")
    for _, value in dead:
        doc = orjson.loads(value)
        print(f"   shard {doc['source']['shard']}: {doc['reason']}")
    missing, extra = expected - got, got - expected
    ok = not missing and not extra and len(dead) == poison
    print(f"== check: {sum(expected.values())} good records written, {len(records)} delivered, "
          f"{sum(missing.values())} missing, {sum(extra.values())} duplicated; {poison} poison written, "
          f"{len(dead)} dead-lettered: {'OK' if ok else 'FAILED'}")
    return ok


def _consumer(bootstrap: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-reader-{uuid.uuid4().hex}",
                     "enable.partition.eof": True, "isolation.level": "read_committed"})


def ends(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end offset now: where this run's records will start."""
    consumer = _consumer(bootstrap)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def read(bootstrap: str, topic: str, starts: dict[int, int], idle: float = 1.0) -> list[tuple[bytes | None, bytes]]:
    consumer = _consumer(bootstrap)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, starts.get(p, OFFSET_BEGINNING)) for p in partitions])
        out: list[tuple[bytes | None, bytes]] = []
        at_end: set[int] = set()
        last = time.monotonic()
        while at_end != set(partitions) or time.monotonic() - last < idle:
            for msg in consumer.consume(10_000, 0.2):
                err = msg.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                elif err is None:
                    at_end.discard(msg.partition())
                    last = time.monotonic()
                    out.append((msg.key(), msg.value()))
        return out
    finally:
        consumer.close()
