"""Shared fixtures. Kafka first; the SLS emulator's fixtures go below."""

from __future__ import annotations

import os
import re
import shutil
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from devstack.kafka import KafkaBroker, KafkaBrokerError, KafkaJarsError, create_topics, free_port
from devstack.kafka import wait_for_broker as wait_for_kafka
from processor import handler
from processor.runtime import Runtime
from tests.kafka_helpers import ExternalKafka, KafkaUnderTest

EXTERNAL_KAFKA_ENV = "SLS_KAFKA_TEST_BOOTSTRAP"

# A test that needs one of these (itself or through another fixture) starts a real broker or the emulator: the
# `slow` tier. `python3 -m pytest -m "not slow"` is the fast tier of pure logic over fakes.
SLOW_FIXTURES = frozenset({"kafka", "sls_emulator"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

# ---------------------------------------------------------------------------------------------- Kafka


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaUnderTest]:
    """The session's Kafka broker: started once on free ports, always stopped at the end.

    With ``SLS_KAFKA_TEST_BOOTSTRAP`` set, that external broker is used instead; tests that stop, kill
    or restart the broker then fail. A broker that cannot start fails the run, with its log.
    """
    external = os.environ.get(EXTERNAL_KAFKA_ENV)
    if external:
        try:
            wait_for_kafka(external, timeout=30)
        except TimeoutError as exc:
            pytest.fail(f"{EXTERNAL_KAFKA_ENV}={external}: {exc}", pytrace=False)
        yield ExternalKafka(external)
        return
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), port=free_port())
    try:
        broker.start()
    except (KafkaBrokerError, KafkaJarsError) as exc:
        broker.kill()
        pytest.fail(f"the test Kafka broker could not start: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.stop()
        # Segments can be large after volume tests; broker.log stays for post-mortems.
        shutil.rmtree(broker.data_dir / "kafka-logs", ignore_errors=True)


TopicFactory = Callable[..., str]


@pytest.fixture
def topic_factory(kafka: KafkaUnderTest, request: pytest.FixtureRequest) -> TopicFactory:
    """Create a uniquely named topic: ``topic_factory(partitions=1, config=None) -> name``.

    The name starts with the test's name so that broker logs can be matched to tests.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:80]

    def make(partitions: int = 1, config: Mapping[str, str] | None = None) -> str:
        name = f"{stem}-{uuid.uuid4().hex[:10]}"
        create_topics(kafka.bootstrap, [name], partitions=partitions, config=config)
        return name

    return make


# --------------------------------------------------------------------------------------- the FC function


class FunctionEnv:
    """The FC function's environment in one test: the variables FC would set, and the handler's module-level
    runtime (`processor.handler._runtime`) closed and dropped whenever they change, so that the next invocation
    initializes from them, and at the end of the test, so that no producer outlives it."""

    # A closing runtime flushes its producers; after a broker fault there may be nothing left to wait for.
    CLOSE_SECONDS = 2.0

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def set(self, env: Mapping[str, str]) -> None:
        for name, value in env.items():
            self.monkeypatch.setenv(name, value)
        self.reset()

    def reset(self) -> None:
        if handler._runtime is not None:
            handler._runtime.close(self.CLOSE_SECONDS)
        self.monkeypatch.setattr(handler, "_runtime", None)


@pytest.fixture(autouse=True)
def _close_runtimes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every `Runtime` a test made (a runner's, an invoker's, the handler's): a producer left open keeps
    reconnecting to a broker the session has stopped, filling the end of the log with 'Connection refused'."""
    made: weakref.WeakSet[Runtime] = weakref.WeakSet()
    init = Runtime.__init__

    def tracked(self: Runtime, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.add(self)

    monkeypatch.setattr(Runtime, "__init__", tracked)
    yield
    for runtime in list(made):
        runtime.close(FunctionEnv.CLOSE_SECONDS)


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[FunctionEnv]:
    """Configure the FC function by environment: ``function_env.set({...})``; see `FunctionEnv`."""
    env = FunctionEnv(monkeypatch)
    env.reset()
    yield env
    env.reset()


# ----------------------------------------------------------------------------------------- SLS emulator
from tests.sls_fixtures import *  # noqa: E402, F403  (fixtures are found by name)
