"""The evaluator's Kafka side: state and outbox in a compacted topic, history in another, partials read back.

Everything the evaluator writes goes through one transactional producer whose `transactional.id` is fixed per
state topic: a second evaluator (a timer invocation overlapping the previous one, a restarted process) fences
the first, whose next commit fails, so two evaluators never both claim a notification.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from alerting.partials import Partial, decode
from common.errors import ConfigError, FatalSinkError, SinkError

Record = tuple[str, str, Any]  # topic, key, JSON-able value (None: a tombstone)
READ_TIMEOUT_SECONDS = 60.0


class AlertStore:
    def __init__(self, client_config: Mapping[str, Any], state_topic: str, history_topic: str) -> None:
        self.client_config = dict(client_config)
        self.state_topic, self.history_topic = state_topic, history_topic
        self.producer = Producer({**self.client_config, "transactional.id": f"sls-kafka-alerts/{state_topic}",
                                  "enable.idempotence": True, "acks": "all", "linger.ms": 5})
        try:
            self.producer.init_transactions(30)
        except KafkaException as exc:
            msg = f"cannot start the alert evaluator's transactional producer: {exc.args[0].str()}"
            raise SinkError(msg) from None

    def load(self) -> dict[str, Any]:
        """The state topic's latest value per key (read_committed), tombstones removed."""
        latest: dict[str, Any] = {}
        for key, value in read_topic(self.client_config, self.state_topic):
            if value is None:
                latest.pop(key, None)
            else:
                latest[key] = orjson.loads(value)
        return latest

    def commit(self, records: Iterable[Record]) -> None:
        """One transaction; a fenced evaluator raises FatalSinkError and must stop."""
        try:
            self.producer.begin_transaction()
            for topic, key, value in records:
                payload = None if value is None else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
                self.producer.produce(topic, payload, key.encode())
            self.producer.commit_transaction(30)
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal() or error.code() == KafkaError._FENCED:
                msg = f"another alert evaluator took over (fenced): {error.str()}"
                raise FatalSinkError(msg) from None
            if error.txn_requires_abort():
                self.producer.abort_transaction(30)
            msg = f"the alert evaluator could not commit to Kafka: {error.str()}"
            raise SinkError(msg) from None

    def close(self) -> None:
        self.producer.flush(5)


def read_topic(client_config: Mapping[str, Any], topic: str,
               start_ms: int | None = None) -> list[tuple[str, bytes | None]]:
    """Every committed record of `topic` (from `start_ms`, else the beginning) as (key, value), in offset order."""
    consumer = _consumer(client_config)
    try:
        return _drain(consumer, _assign(consumer, topic, start_ms), topic)
    finally:
        consumer.close()


def _consumer(client_config: Mapping[str, Any]) -> Consumer:
    return Consumer({**client_config, "group.id": f"sls-kafka-alerts-{uuid.uuid4().hex}",
                     "enable.auto.commit": False, "enable.partition.eof": True,
                     "isolation.level": "read_committed",
                     # The end of a partition is known after one fetch: no need to wait for more data there.
                     "fetch.wait.max.ms": 50})


def _assign(consumer: Consumer, topic: str, start_ms: int | None) -> set[int]:
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        msg = (f"topic {topic!r} does not exist: create it (kafka-topics.sh --create --topic {topic} "
               "--config cleanup.policy=compact for the state topic)")
        raise ConfigError(msg)
    parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
    if start_ms is not None:
        parts = consumer.offsets_for_times([TopicPartition(topic, p, start_ms) for p in meta.partitions], 10)
    consumer.assign(parts)
    return {p.partition for p in parts}


class PartialsReader:
    """The partials topic, read from a time at the first call and on from where it stopped at the next ones, so a
    long-running evaluator (a warm FC instance, `alerts run`) reads each partial once."""

    def __init__(self, client_config: Mapping[str, Any], topic: str) -> None:
        self.client_config, self.topic = client_config, topic
        self._consumer: Consumer | None = None

    def read(self, since_ms: int) -> list[Partial]:
        if self._consumer is None:
            consumer = _consumer(self.client_config)
            try:
                records = _drain(consumer, _assign(consumer, self.topic, since_ms), self.topic)
            except BaseException:
                consumer.close()
                raise
            self._consumer = consumer
        else:
            records = self._more(self._consumer)
        return [decode(key.encode(), value) for key, value in records if value is not None]

    def _more(self, consumer: Consumer) -> list[tuple[str, bytes | None]]:
        """What arrived since the last read: until a poll brings nothing new (what comes later, the next tick gets)."""
        out: list[tuple[str, bytes | None]] = []
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            got = False
            for message in consumer.consume(num_messages=1000, timeout=0.2):
                error = message.error()
                if error is None:
                    out.append(((message.key() or b"").decode(), message.value()))
                    got = True
                elif error.code() != KafkaError._PARTITION_EOF:
                    msg = f"reading topic {self.topic!r}: {error.str()}"
                    raise SinkError(msg)
            if not got:
                break
        return out

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def _drain(consumer: Consumer, partitions: set[int], topic: str) -> list[tuple[str, bytes | None]]:
    out: list[tuple[str, bytes | None]] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + READ_TIMEOUT_SECONDS
    while at_end != partitions:
        if time.monotonic() > deadline:
            msg = f"reading topic {topic!r} took over {READ_TIMEOUT_SECONDS:.0f} s"
            raise SinkError(msg)
        for message in consumer.consume(num_messages=1000, timeout=0.2):
            error = message.error()
            if error is None:
                out.append(((message.key() or b"").decode(), message.value()))
                at_end.discard(message.partition())
            elif error.code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
            else:
                msg = f"reading topic {topic!r}: {error.str()}"
                raise SinkError(msg)
    return out
