"""The project's own Kafka broker: delivery, transactions, restarts and crashes, SASL, start-up errors."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from devstack.kafka import KafkaBroker, KafkaBrokerError, create_topics, free_port
from tests.kafka_helpers import KafkaUnderTest, read_all

pytestmark = pytest.mark.slow  # each test starts brokers of its own


def _produce(bootstrap: str, topic: str, values: list[bytes], **config: object) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **config})
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for i, value in enumerate(values):
        producer.produce(topic, value, key=str(i).encode(), headers={"n": str(i)}, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []


@pytest.fixture
def running_after_test(kafka: KafkaUnderTest) -> Iterator[KafkaUnderTest]:
    """The broker, started again after the test if the test left it stopped or killed."""
    yield kafka
    if isinstance(kafka, KafkaBroker) and kafka.process is None:
        kafka.start()


def test_broker_idempotent_producer_records_read_back(kafka, topic_factory):
    topic = topic_factory(partitions=3)
    values = [f"v{i}".encode() for i in range(300)]

    _produce(kafka.bootstrap, topic, values)

    records = read_all(kafka.bootstrap, topic)
    assert Counter(r.value for r in records) == Counter(values)
    assert {r.partition for r in records} == {0, 1, 2}
    assert all(r.headers["n"] == r.key for r in records)


def test_broker_transactions_read_committed_hides_aborted(kafka, topic_factory):
    topic = topic_factory(partitions=2)
    producer = Producer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "transactional.id": f"txn-{uuid.uuid4().hex}",
            "transaction.timeout.ms": 10_000,
        }
    )
    producer.init_transactions(30)
    for outcome in ("committed", "aborted"):
        producer.begin_transaction()
        for i in range(10):
            producer.produce(topic, f"{outcome}-{i}".encode(), key=str(i).encode())
        if outcome == "committed":
            producer.commit_transaction(30)
        else:
            producer.flush(30)  # the records reach the log, then the abort marker hides them
            producer.abort_transaction(30)

    committed = {f"committed-{i}".encode() for i in range(10)}
    aborted = {f"aborted-{i}".encode() for i in range(10)}
    assert Counter(r.value for r in read_all(kafka.bootstrap, topic)) == Counter(committed)
    uncommitted = read_all(kafka.bootstrap, topic, isolation="read_uncommitted")
    assert Counter(r.value for r in uncommitted) == Counter(committed | aborted)


def test_broker_stop_then_start_keeps_data(running_after_test, topic_factory):
    kafka = running_after_test
    topic = topic_factory(partitions=2)
    _produce(kafka.bootstrap, topic, [b"before-restart"] * 20)

    kafka.restart()

    _produce(kafka.bootstrap, topic, [b"after-restart"] * 5)
    values = Counter(r.value for r in read_all(kafka.bootstrap, topic))
    assert values == Counter({b"before-restart": 20, b"after-restart": 5})


def test_broker_sigkill_then_start_keeps_acknowledged_data(running_after_test, topic_factory):
    kafka = running_after_test
    topic = topic_factory()
    _produce(kafka.bootstrap, topic, [b"acked"] * 50)

    kafka.kill()
    kafka.start()

    assert Counter(r.value for r in read_all(kafka.bootstrap, topic)) == Counter({b"acked": 50})


def test_broker_sasl_listener_accepts_configured_user_only(tmp_path):
    broker = KafkaBroker(tmp_path / "kafka", port=free_port(), heap="256m", sasl_users={"alice": "secret"})
    broker.start()
    try:
        sasl = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "alice"}
        create_topics(broker.sasl_bootstrap, ["secured"], client_config={**sasl, "sasl.password": "secret"})
        _produce(broker.sasl_bootstrap, "secured", [b"ok"], **sasl, **{"sasl.password": "secret"})
        assert [r.value for r in read_all(broker.bootstrap, "secured")] == [b"ok"]

        assert _auth_errors(broker.sasl_bootstrap, {**sasl, "sasl.password": "wrong"})
    finally:
        broker.stop()


def _auth_errors(bootstrap: str, config: dict[str, str]) -> list[KafkaError]:
    errors: list[KafkaError] = []
    admin = AdminClient({"bootstrap.servers": bootstrap, "error_cb": errors.append, "log_level": 0, **config})
    with contextlib.suppress(KafkaException):
        admin.list_topics(timeout=3)
    admin.poll(0.5)  # error_cb runs only from poll()
    return [e for e in errors if e.code() == KafkaError._AUTHENTICATION]


def test_broker_bad_config_fails_fast_with_log(tmp_path: Path):
    broker = KafkaBroker(tmp_path / "kafka", port=free_port(), overrides={"num.io.threads": "many"})

    with pytest.raises(KafkaBrokerError, match=r"num\.io\.threads"):
        broker.start(timeout=60)
    assert broker.process is None


def test_broker_port_in_use_refused_before_launch(kafka, tmp_path: Path):
    if not isinstance(kafka, KafkaBroker):
        pytest.fail("needs the suite's own broker to occupy a known port")
    broker = KafkaBroker(tmp_path / "kafka", port=kafka.port)

    with pytest.raises(KafkaBrokerError, match=f"port {kafka.port} is already in use"):
        broker.start()


def test_broker_jvm_exit_while_starting_raises_at_once_with_log(tmp_path: Path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))  # bound but not listening: invisible to a connect probe
        broker = KafkaBroker(tmp_path / "kafka", port=free_port(), controller_port=blocker.getsockname()[1])

        with pytest.raises(KafkaBrokerError, match=r"(?s)JVM exited with code.*Address already in use"):
            broker.start(timeout=60)
    assert broker.process is None
