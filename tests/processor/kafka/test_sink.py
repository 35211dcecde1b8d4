"""KafkaSink against the real broker: confirmed deliveries, refusals handed back, errors raised."""

import time

import pytest

from common.deadline import Deadline
from common.errors import SinkError
from processor.dead_letter import Provenance
from processor.kafka.producer import KafkaSink
from processor.kafka.tracking import DeliveryTracker
from tests.kafka_helpers import read_all

WHERE = Provenance("proj", "store", 0, "MTIz", 4)


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
    for i in range(5000):
        sink.produce(topic, str(i % 7).encode(), f'{{"n":{i}}}'.encode(), WHERE, tracker)
    sink.wait(tracker, Deadline.after(30))
    assert (tracker.delivered, tracker.pending, tracker.error) == (5000, 0, None)
    records = read_all(kafka.bootstrap, topic)
    assert sorted(r.value for r in records) == sorted(f'{{"n":{i}}}'.encode() for i in range(5000))
    assert all(r.headers == dict(WHERE.headers()) for r in records)


def test_waiting_for_the_newest_page_sends_what_lingers_at_once(kafka, topic_factory, sink_for):
    """A range's last page is not held for linger.ms: nothing more is produced while its delivery is awaited."""
    topic = topic_factory(partitions=2)
    sink, older, newest = sink_for(kafka, **{"linger.ms": 5000}), DeliveryTracker(), DeliveryTracker()
    sink.produce_all(topic, [(b"1", b"a")], WHERE, older)
    sink.produce_all(topic, [(b"2", b"b")], WHERE, newest)
    started = time.monotonic()
    sink.wait(newest, Deadline.after(30))
    assert time.monotonic() - started < 2.5
    assert (older.delivered, newest.delivered) == (1, 1)


def test_sink_record_over_client_limit_is_handed_back_not_raised(kafka, topic_factory, sink_for):
    topic = topic_factory()
    sink, tracker = sink_for(kafka, **{"message.max.bytes": 10_000}), DeliveryTracker()
    sink.produce(topic, None, b"x" * 20_000, WHERE, tracker)
    sink.produce(topic, None, b"small", WHERE, tracker)
    sink.wait(tracker, Deadline.after(30))
    assert [u.value[:1] for u in tracker.undeliverable] == [b"x"]
    assert "size" in tracker.undeliverable[0].reason.lower() or "large" in tracker.undeliverable[0].reason.lower()
    assert [r.value for r in read_all(kafka.bootstrap, topic)] == [b"small"]


def test_sink_record_refused_by_broker_is_handed_back(kafka, topic_factory, sink_for):
    topic = topic_factory(config={"max.message.bytes": "2000"})
    sink, tracker = sink_for(kafka, **{"compression.type": "none"}), DeliveryTracker()
    sink.produce(topic, None, b"y" * 5000, WHERE, tracker)
    sink.wait(tracker, Deadline.after(30))
    assert len(tracker.undeliverable) == 1
    assert tracker.undeliverable[0].topic == topic


def test_sink_delivery_error_raises_at_wait(kafka, topic_factory, sink_for):
    sink, tracker = sink_for(kafka, **{"message.timeout.ms": 2000}), DeliveryTracker()
    sink.produce("no-such-topic-for-sure", None, b"v", WHERE, tracker)
    with pytest.raises(SinkError, match="Kafka did not confirm"):
        sink.wait(tracker, Deadline.after(30))


def test_sink_broker_refusal_keeps_our_provenance(kafka, topic_factory, sink_for):
    topic = topic_factory(config={"max.message.bytes": "2000"})
    sink, tracker = sink_for(kafka, **{"compression.type": "none"}), DeliveryTracker()
    sink.produce_all(topic, [(b"k", b"y" * 5000)], WHERE, tracker)
    sink.wait(tracker, Deadline.after(30))
    [refused] = tracker.undeliverable
    assert (refused.where, refused.key, refused.alone) == (WHERE, b"k", False)


def test_sink_probe_finds_the_one_record_too_large_among_a_refused_batch(kafka, topic_factory, sink_for):
    """A batch over the topic's limit is refused whole; sent again one by one, only the big record is refused."""
    topic = topic_factory(partitions=2, config={"max.message.bytes": "10000"})
    sink, tracker = sink_for(kafka, **{"compression.type": "none", "linger.ms": 50}), DeliveryTracker()
    small = [(str(i).encode(), b"s%04d" % i + b"." * 95) for i in range(300)]
    sink.produce_all(topic, [*small[:150], (b"big", b"B" * 12_000), *small[150:]], WHERE, tracker)
    sink.wait(tracker, Deadline.after(30))
    assert len(tracker.undeliverable) > 1, "the broker should have refused the big record's whole batch"

    guilty = sink.probe(tracker.undeliverable, Deadline.after(30))

    assert [(g.key, g.alone, g.where) for g in guilty] == [(b"big", True, WHERE)]
    assert sorted(r.value for r in read_all(kafka.bootstrap, topic)) == sorted(v for _, v in small)
