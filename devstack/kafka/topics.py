"""Broker readiness and topic creation through the Kafka AdminClient, for tests and the app alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

_POLL_S = 0.2


def _admin(bootstrap: str, client_config: Mapping[str, str] | None) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **(client_config or {})})


def wait_for_broker(
    bootstrap: str,
    timeout: float = 60.0,
    *,
    still_starting: Callable[[], None] | None = None,
    client_config: Mapping[str, str] | None = None,
) -> None:
    """Block until a metadata request to ``bootstrap`` reports at least one broker.

    ``still_starting`` is called between attempts and may raise to abort early (e.g. when the broker
    process has died). Raises ``TimeoutError`` when ``timeout`` runs out.
    """
    admin = _admin(bootstrap, client_config)
    deadline = time.monotonic() + timeout
    while True:
        if still_starting is not None:
            still_starting()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            msg = f"no Kafka broker answered a metadata request at {bootstrap} within {timeout:.0f}s"
            raise TimeoutError(msg)
        try:
            if admin.list_topics(timeout=min(2.0, remaining)).brokers:
                return
        except KafkaException:
            pass  # not up yet: the listener opens only once the broker is unfenced
        time.sleep(_POLL_S)


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    *,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    client_config: Mapping[str, str] | None = None,
) -> None:
    """Create topics (replication factor 1) and wait until every partition has a leader.

    A topic that already exists is fine and left as it is (its partition count is not checked).
    """
    wanted = list(names)
    admin = _admin(bootstrap, client_config)
    new = [
        NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {})) for name in wanted
    ]
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                msg = f"could not create topic {name!r} on {bootstrap}: {exc.args[0].str()}"
                raise RuntimeError(msg) from exc
    _wait_for_leaders(admin, wanted, timeout)


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        metadata = admin.list_topics(timeout=timeout)
        for name in list(pending):
            topic = metadata.topics.get(name)
            if topic and topic.error is None and all(p.leader >= 0 for p in topic.partitions.values()):
                pending.discard(name)
        if pending and time.monotonic() > deadline:
            msg = f"topics without a leader after {timeout:.0f}s: {sorted(pending)}"
            raise TimeoutError(msg)
        if pending:
            time.sleep(_POLL_S)
