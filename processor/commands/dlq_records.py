"""Dead-letter records as `dlq show` and `dlq replay` read them (the format `processor.dead_letter` writes).

The topic is read with read_committed up to the end it had when reading started: records appended meanwhile
(a replay's own new dead letters) belong to the next run, so a record that keeps failing cannot loop.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aliyun.log.proto import LogGroup, LogGroupRaw
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from checkpoints.kafka_txn import producer_only
from common.errors import ConfigError, SinkError
from processor.config import KafkaConfig

METADATA_SECONDS = 10.0


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic; `doc` is its JSON value (empty when the value is not a dead letter)."""

    partition: int
    offset: int
    key: bytes | None
    headers: list[tuple[str, bytes]]
    doc: dict[str, Any]

    @classmethod
    def from_message(cls, msg: Message) -> DeadLetter:
        try:
            doc = orjson.loads(msg.value() or b"")
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("reason"), str):
            doc = {"reason": f"not a dead-letter record: {(msg.value() or b'')[:80]!r}"}
        return cls(msg.partition(), msg.offset(), msg.key(), list(msg.headers() or []), doc)

    @property
    def reason(self) -> str:
        return self.doc["reason"]

    @property
    def source(self) -> dict[str, Any]:
        return self.doc.get("source") or {}

    @property
    def rejected_at(self) -> float | None:
        return self.doc.get("rejected_at")

    @property
    def target_topic(self) -> str | None:
        return self.doc.get("target_topic")

    def summary(self) -> dict[str, Any]:
        """What `dlq show --json` prints of it."""
        out = {"partition": self.partition, "offset": self.offset, **self.doc}
        if self.key is not None:
            out["key"] = self.key.decode("utf-8", "replace")
        return out


def consumer_config(kafka: KafkaConfig, group: str) -> dict[str, Any]:
    """A read_committed consumer with the producer's connection and security settings; offsets committed by hand."""
    client = {k: v for k, v in kafka.producer_config().items() if not producer_only(k)}
    return {**client, "group.id": group, "enable.auto.commit": False, "isolation.level": "read_committed",
            "enable.partition.eof": True, "auto.offset.reset": "earliest"}


def partitions_of(consumer: Consumer, topic: str, what: str) -> list[int]:
    try:
        meta = consumer.list_topics(topic, timeout=METADATA_SECONDS).topics.get(topic)
    except KafkaException as exc:
        msg = f"cannot read the {what} {topic!r}: {exc.args[0].str()}"
        raise SinkError(msg) from None
    if meta is None or meta.error is not None or not meta.partitions:
        reason = meta.error.str() if meta is not None and meta.error is not None else "it does not exist"
        msg = f"cannot read the {what} {topic!r}: {reason} (it is KAFKA_DLQ_TOPIC, by default <KAFKA_TOPIC>.dlq)"
        raise ConfigError(msg)
    return sorted(meta.partitions)


def read_to_end(consumer: Consumer, topic: str, starts: dict[int, int], timeout: float = 60.0,
                ) -> Iterator[DeadLetter]:
    """Every record from `starts` (partition: offset, OFFSET_BEGINNING allowed) to each partition's end now."""
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=METADATA_SECONDS)[1] for p in starts}
    # A partition is done at its end as of now, or where read_committed stops (an open transaction's start).
    todo = {p for p, start in starts.items() if start < ends[p]}  # OFFSET_BEGINNING is negative
    if not todo:
        return
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in sorted(todo)])
    deadline = time.monotonic() + timeout
    while todo:
        if time.monotonic() > deadline:
            msg = f"reading {topic!r} took over {timeout:.0f}s (partitions not at their end: {sorted(todo)})"
            raise SinkError(msg)
        for msg in consumer.consume(num_messages=500, timeout=0.2):
            p = msg.partition()
            if p not in todo:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    todo.discard(p)
                    continue
                text = f"cannot read {topic!r}: {err.str()}"
                raise SinkError(text)
            if msg.offset() >= ends[p]:
                todo.discard(p)
                continue
            yield DeadLetter.from_message(msg)
            if msg.offset() + 1 >= ends[p]:
                todo.discard(p)


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    msg = f"the original's {what} is not UTF-8 text"
    raise ValueError(msg)


def _value(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and isinstance(value.get("base64"), str):
        return base64.b64decode(value["base64"])
    msg = f"the original holds a value that is neither text nor base64: {value!r}"
    raise ValueError(msg)


def original_group(original: dict[str, Any]) -> LogGroup:
    """The one-log LogGroup a dead letter's `original` was cut from, as the SDK hands it to the projection.

    Built as LogGroupRaw (bytes values, so a value that is not UTF-8 comes back as it was), serialized and
    parsed as LogGroup: upb then gives such a value as bytes, exactly as for a pulled group. ValueError says
    what is missing.
    """
    raw = LogGroupRaw()
    try:
        if "__topic__" in original:
            raw.Topic = _text(original["__topic__"], "topic")
        if "__source__" in original:
            raw.Source = _text(original["__source__"], "source")
        log = raw.Logs.add()
        log.Time = int(original["__time__"])
        if "__time_ns__" in original:
            log.Time_ns = int(original["__time_ns__"])
        for key, value in original["contents"]:
            content = log.Contents.add()
            content.Key = _text(key, "content key")
            content.Value = _value(value)
        for key, value in (original.get("tags") or {}).items():
            tag = raw.LogTags.add()
            tag.Key, tag.Value = key, _text(value, f"tag {key!r}")
    except (KeyError, TypeError) as exc:
        msg = f"the original is not an SLS log as dead letters record it ({exc!r})"
        raise ValueError(msg) from None
    group = LogGroup()
    group.ParseFromString(raw.SerializeToString())
    return group
