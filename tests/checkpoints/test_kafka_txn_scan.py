"""The checkpoint topic's backward scan (`KafkaCheckpointStore.load`) over a fake partition (fast tier).

The fake is the minimal surface the store uses: an admin client's `create_topics`/`list_offsets` and a
read_committed consumer's `assign`/`consume`/`position`, over one partition whose offsets hold records or
transaction markers (never delivered), a low watermark (compaction) and a last stable offset (open transactions).
"""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from checkpoints.base import Checkpoint, CheckpointKey
from checkpoints.kafka_txn import KafkaCheckpointStore
from common.deadline import Deadline
from common.errors import CheckpointError

TOPIC = "ckpt"
KEY = CheckpointKey("proj", "driving", 3, "")
OTHER = CheckpointKey("proj", "driving", 4, "")


class Partition:
    """Offsets low..high-1: a (key, value) record, or None for a transaction marker. `stable` is the last stable
    offset: read_committed consumers see nothing from there on."""

    def __init__(self) -> None:
        self.log: list[tuple[bytes, bytes] | None] = []
        self.low = 0
        self.stable: int | None = None
        self.delivered = 0

    def append(self, key: CheckpointKey, cursor: int, origin: int = 0) -> None:
        doc = {"cursor": f"c{cursor}", "origin": f"c{origin}", "shard": key.shard}
        self.log.append((str(key).encode(), orjson.dumps(doc)))

    def marker(self) -> None:
        self.log.append(None)

    @property
    def high(self) -> int:
        return len(self.log)


class _Record:
    def __init__(self, offset: int, key: bytes | None, value: bytes | None, err: KafkaError | None = None) -> None:
        self._o, self._k, self._v, self._e = offset, key, value, err

    def error(self) -> KafkaError | None:
        return self._e

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v

    def offset(self) -> int:
        return self._o


class FakeConsumer:
    def __init__(self, part: Partition) -> None:
        self.part = part
        self.pos = 0

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.pos = max(partitions[0].offset, self.part.low)

    def consume(self, num_messages: int, timeout: float) -> list[_Record]:
        part = self.part
        end = part.high if part.stable is None else part.stable
        out = []
        while self.pos < end and len(out) < num_messages:
            entry = part.log[self.pos]
            if entry is not None:
                out.append(_Record(self.pos, *entry))
                part.delivered += 1
            self.pos += 1
        if self.pos == part.high:
            out.append(_Record(self.pos, None, None, KafkaError(KafkaError._PARTITION_EOF)))
        return out

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, 0, self.pos)]

    def close(self) -> None:
        """Nothing to release."""


class FakeAdmin:
    def __init__(self, part: Partition) -> None:
        self.part = part

    def create_topics(self, topics: list, request_timeout: float) -> dict[str, Future]:
        done: Future = Future()
        done.set_exception(KafkaException(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS)))
        return {t.topic: done for t in topics}

    def list_offsets(self, request: dict, isolation_level: object, request_timeout: float) -> dict:
        [(tp, spec)] = request.items()
        offset = self.part.high if isinstance(spec, type(OffsetSpec.latest())) else self.part.low
        done: Future = Future()
        done.set_result(SimpleNamespace(offset=offset))
        return {tp: done}


def store_over(part: Partition) -> KafkaCheckpointStore:
    store = KafkaCheckpointStore({"bootstrap.servers": "unused:9092"}, TOPIC)
    # The store builds its clients lazily into these; the fakes take their place.
    store._admin = FakeAdmin(part)
    store._consumer = FakeConsumer(part)
    return store


def busy_partition(others: int, wanted_at: list[int]) -> Partition:
    """`others` checkpoints of another shard, with this shard's at the given positions (cursor = position)."""
    part = Partition()
    for i in range(others):
        if i in wanted_at:
            part.append(KEY, i)
        part.append(OTHER, i)
        if i % 7 == 0:
            part.marker()
    return part


def test_the_latest_checkpoint_of_a_key_near_the_end_is_found_reading_one_window():
    part = busy_partition(50_000, wanted_at=[10, 49_990])

    assert store_over(part).load(KEY) == Checkpoint("c49990", "c0")
    assert part.delivered <= 5_000


def test_a_checkpoint_far_back_is_found_by_widening_the_window():
    part = busy_partition(40_000, wanted_at=[5, 120])

    assert store_over(part).load(KEY) == Checkpoint("c120", "c0")


def test_no_checkpoint_for_the_key_reads_down_to_the_low_watermark_and_finds_none():
    part = busy_partition(12_000, wanted_at=[])
    part.low = 3_000

    assert store_over(part).load(KEY) is None


def test_a_key_only_below_the_low_watermark_is_gone():
    part = busy_partition(9_000, wanted_at=[2])
    part.low = 100

    assert store_over(part).load(KEY) is None


def test_a_transaction_that_stays_open_ends_the_scan_at_the_deadline_naming_the_cause():
    part = busy_partition(100, wanted_at=[50])
    part.stable = 80

    with pytest.raises(CheckpointError, match="transaction stays open"):
        store_over(part).load(KEY, Deadline.after(0.3))


def test_a_record_that_is_not_a_checkpoint_is_named():
    part = busy_partition(10, wanted_at=[])
    part.log.append((str(KEY).encode(), b'{"not": "a checkpoint"}'))

    with pytest.raises(CheckpointError, match="not a checkpoint"):
        store_over(part).load(KEY)
