"""KafkaSink against the real broker: confirmed deliveries, refusals handed back, errors raised."""

import pytest
from kafka_helpers import read_all

from processor.deadline import Deadline
from processor.errors import SinkError
from processor.sink import DeliveryTracker, KafkaSink


@pytest.fixture
def sink_for(kafka):
    sinks: list[KafkaSink] = []

    def make(_kafka, **extra):
        sinks.append(KafkaSink({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True, "acks": "all",
                                "linger.ms": 5, **extra}))
        return sinks[-1]

    yield make
    for sink in sinks:
        sink.abandon()
        sink.close(1)


def test_sink_batch_is_confirmed_and_readable(kafka, topic_factory, sink_for):
    topic = topic_factory(partitions=3)
    sink, tracker = sink_for(kafka), DeliveryTracker()
    headers = [("sls.shard", b"0")]
    for i in range(5000):
        sink.produce(topic, str(i % 7).encode(), f'{{"n":{i}}}'.encode(), headers, tracker)
    sink.wait(tracker, Deadline.after(30))
    assert (tracker.delivered, tracker.pending, tracker.error) == (5000, 0, None)
    records = read_all(kafka.bootstrap, topic)
    assert sorted(r.value for r in records) == sorted(f'{{"n":{i}}}'.encode() for i in range(5000))
    assert all(r.headers == {"sls.shard": b"0"} for r in records)


def test_sink_record_over_client_limit_is_handed_back_not_raised(kafka, topic_factory, sink_for):
    topic = topic_factory()
    sink, tracker = sink_for(kafka, **{"message.max.bytes": 10_000}), DeliveryTracker()
    sink.produce(topic, None, b"x" * 20_000, [], tracker)
    sink.produce(topic, None, b"small", [], tracker)
    sink.wait(tracker, Deadline.after(30))
    assert [u.value[:1] for u in tracker.undeliverable] == [b"x"]
    assert "size" in tracker.undeliverable[0].reason.lower() or "large" in tracker.undeliverable[0].reason.lower()
    assert [r.value for r in read_all(kafka.bootstrap, topic)] == [b"small"]


def test_sink_record_refused_by_broker_is_handed_back(kafka, topic_factory, sink_for):
    topic = topic_factory(config={"max.message.bytes": "2000"})
    sink, tracker = sink_for(kafka, **{"compression.type": "none"}), DeliveryTracker()
    sink.produce(topic, None, b"y" * 5000, [], tracker)
    sink.wait(tracker, Deadline.after(30))
    assert len(tracker.undeliverable) == 1
    assert tracker.undeliverable[0].topic == topic


def test_sink_delivery_error_raises_at_wait(kafka, topic_factory, sink_for):
    sink, tracker = sink_for(kafka, **{"message.timeout.ms": 2000}), DeliveryTracker()
    sink.produce("no-such-topic-for-sure", None, b"v", [], tracker)
    with pytest.raises(SinkError, match="Kafka did not confirm"):
        sink.wait(tracker, Deadline.after(30))
