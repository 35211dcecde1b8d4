"""Checkpoints as records in a compacted Kafka topic, written in the same transaction as the data (KIP-618 style).

`record` builds the checkpoint record that the transactional commit strategy produces in the transaction of
the records it covers: it becomes visible when that transaction commits, or never. `load` reads the latest
committed record for a key with a read_committed consumer.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from checkpoints.base import Checkpoint, CheckpointKey
from common.deadline import Deadline
from common.errors import CheckpointError

# Offsets read per step when scanning back from the end for a key's latest checkpoint.
_WINDOW = 5000


class KafkaCheckpointStore:
    """Cursor per key in `topic` (one partition, compacted); see the module docstring for the guarantees."""

    def __init__(self, client_config: dict[str, Any], topic: str, timeout: float = 30.0) -> None:
        self.topic = topic
        self.timeout = timeout
        self._client_config = {k: v for k, v in client_config.items() if not producer_only(k)}
        self._consumer: Consumer | None = None
        self._admin: AdminClient | None = None
        self._topic_ready = False

    def ensure_topic(self, deadline: Deadline | None = None) -> None:
        if self._topic_ready:
            return
        timeout = max(deadline.remaining(), 0.1) if deadline else self.timeout
        admin = self._admin_client()
        futures = admin.create_topics([NewTopic(self.topic, num_partitions=1, replication_factor=-1,
                                                config={"cleanup.policy": "compact", "segment.ms": "600000"})],
                                      request_timeout=timeout)
        try:
            futures[self.topic].result(timeout)
        except TimeoutError as exc:
            msg = f"creating checkpoint topic {self.topic!r} took over {timeout:.0f}s; is Kafka reachable?"
            raise CheckpointError(msg) from exc
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                msg = (f"cannot create checkpoint topic {self.topic!r}: {exc.args[0].str()} "
                       "(create it by hand, compacted)")
                raise CheckpointError(msg) from exc
        self._topic_ready = True

    def record(self, key: CheckpointKey, checkpoint: Checkpoint) -> tuple[str, bytes, bytes]:
        """(topic, key, value) of the record that commits `checkpoint`, for the transaction that covers it.

        Written by the transactional commit strategy in the same transaction as the records: no merge is
        needed, since the transactional id fences every other writer of the key.
        """
        value = orjson.dumps({"cursor": checkpoint.cursor, "origin": checkpoint.origin, "project": key.project,
                              "logstore": key.logstore, "shard": key.shard, "scope": key.scope,
                              "saved_at": time.time()})
        return self.topic, str(key).encode(), value

    def load(self, key: CheckpointKey, deadline: Deadline | None = None) -> Checkpoint | None:
        """The latest committed cursor for `key`, read by `deadline` (default: within the store's timeout).

        Call it after `init_transactions()`: that returns only once this transactional id's earlier
        transaction is complete, and the scan below waits until every transaction open in the partition at
        that moment is decided, so a checkpoint committed just before is never missed.
        """
        # One bound for the whole read: a frozen broker must not get a full timeout at every step.
        deadline = deadline or Deadline.after(self.timeout)
        self.ensure_topic(deadline)
        tp = TopicPartition(self.topic, 0)
        high = self._high_watermark(tp, deadline)
        consumer = self._consumer_client()
        wanted = str(key).encode()
        low = self._low_watermark(tp, deadline)
        end = high
        start = max(low, end - _WINDOW)
        while True:
            found = self._scan(consumer, tp, start, high, wanted, deadline)
            if found is not None or start <= low:
                return found
            end, start = start, max(low, start - 2 * (end - start))

    def _scan(self, consumer: Consumer, tp: TopicPartition, start: int, high: int, wanted: bytes,
              deadline: Deadline) -> Checkpoint | None:
        consumer.assign([TopicPartition(tp.topic, tp.partition, start)])
        latest: Checkpoint | None = None
        position = start
        while position < high:
            if deadline.expired():
                msg = (f"checkpoint topic {self.topic!r} did not become readable up to offset {high} within the "
                       "time budget (a transaction stays open, check transaction.timeout.ms, or Kafka does not "
                       "answer)")
                raise CheckpointError(msg)
            for record in consumer.consume(1000, min(0.05, deadline.remaining())):
                err = record.error()
                if err is None:
                    if record.key() == wanted and record.offset() < high and record.value():
                        latest = _checkpoint_of(record.value(), self.topic)
                elif err.code() != KafkaError._PARTITION_EOF:
                    msg = f"reading checkpoint topic {self.topic!r}: {err.str()}"
                    raise CheckpointError(msg)
            # Transaction markers take offsets but are never delivered: the position says how far we got.
            # Under read_committed it stops at the last stable offset until open transactions are decided.
            position = max(position, consumer.position([tp])[0].offset)
        return latest

    def _high_watermark(self, tp: TopicPartition, deadline: Deadline) -> int:
        return self._list_offset(tp, OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED, deadline)

    def _low_watermark(self, tp: TopicPartition, deadline: Deadline) -> int:
        return self._list_offset(tp, OffsetSpec.earliest(), IsolationLevel.READ_UNCOMMITTED, deadline)

    def _list_offset(self, tp: TopicPartition, spec: OffsetSpec, isolation: IsolationLevel,
                     deadline: Deadline) -> int:
        while True:
            futures = self._admin_client().list_offsets({tp: spec}, isolation_level=isolation,
                                                        request_timeout=max(deadline.remaining(), 0.1))
            try:
                return int(futures[tp].result(max(deadline.remaining(), 0.1)).offset)
            except (KafkaException, TimeoutError) as exc:
                if deadline.remaining() > 0.2:
                    # After a broker restart the partition may lack a leader for a moment, and a client can
                    # keep stale leader epochs: start over with a fresh admin client.
                    self._admin = None
                    time.sleep(0.2)
                    continue
                reason = exc.args[0].str() if isinstance(exc, KafkaException) else "timed out"
                msg = f"cannot read offsets of checkpoint topic {self.topic!r}: {reason}"
                raise CheckpointError(msg) from exc

    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(self._client_config)
        return self._admin

    def _consumer_client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer({
                **self._client_config,
                "group.id": "sls-kafka-checkpoint-reader",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            })
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        # An admin client kept would go on reconnecting (and logging) after the broker it knew is gone.
        self._admin = None


_PRODUCER_KEYS = ("linger.ms", "batch.size", "compression.type", "queue.buffering", "enable.idempotence", "acks",
                  "message.timeout.ms", "transactional.id", "transaction.timeout.ms", "message.max.bytes",
                  "delivery.timeout.ms", "retries", "max.in.flight", "batch.num.messages", "error_cb")


def _checkpoint_of(value: bytes, topic: str) -> Checkpoint:
    try:
        doc = orjson.loads(value)
        cursor, origin = doc["cursor"], doc.get("origin")
    except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
        cursor = origin = None
    if not isinstance(cursor, str) or not isinstance(origin, (str, type(None))):
        msg = f"checkpoint topic {topic!r} holds a record that is not a checkpoint: {value[:200]!r}"
        raise CheckpointError(msg)
    return Checkpoint(cursor, origin)


def producer_only(key: str) -> bool:
    """Keys only a producer accepts: a consumer built from the producer's settings leaves them out."""
    return key.startswith(_PRODUCER_KEYS)

