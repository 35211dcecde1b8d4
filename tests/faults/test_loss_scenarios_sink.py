"""Loss scenarios 6 and 8 (issue 13): records the broker refuses as too large, against the real broker.

The broker refuses a whole producer batch when it is over the topic's `max.message.bytes`, so the small records
that shared a batch with an oversized one come back refused too. Only the record that is too large on its own
may be dead-lettered, and its dead letter must say where it came from.
"""

from __future__ import annotations

import random
import string
import time
from collections import Counter

import orjson
import pytest

from common.errors import FatalSinkError
from processor import handler as fc
from tests.faults.test_fault_matrix import Setup, one_shard
from tests.kafka_helpers import read_all
from tests.pipeline_support import chunks, fc312_context, json_contents, put_groups, shard_events

HUGE_CAR = 777_777


@pytest.fixture
def setup(kafka, topic_factory, tmp_path, function_env):
    return Setup("at-least-once", kafka, topic_factory, tmp_path, function_env)


def limited_topic(setup: Setup, topic_factory, limit: int, mode: str, **env: str) -> None:
    """Point the function at a fresh 3-partition topic whose max.message.bytes is `limit`."""
    setup.mode = mode
    setup.topic = topic_factory(partitions=3, config={"max.message.bytes": str(limit)})
    setup.configure(KAFKA_TOPIC=setup.topic, DELIVERY_MODE=mode, PROJECTION_FIELDS="speed:number,carID:int,note:str?",
                    **env)


def write_with_one_huge(sls_client, project: str, logstore: str, small: int, huge_bytes: int,
                        per_group: int, at: int | None = None) -> None:
    """`small` records (carID 0..small-1) and one record with an incompressible `note`, in the middle or `at`.

    Random letters: lz4 (the producer's compression) barely shrinks them, so the broker sees the full size.
    """
    rng = random.Random(6)
    records: list[dict] = [{"speed": i % 180, "carID": i} for i in range(small)]
    note = "".join(rng.choices(string.ascii_letters + string.digits, k=huge_bytes))
    records.insert(small // 2 + 7 if at is None else at, {"speed": 9, "carID": HUGE_CAR, "note": note})
    put_groups(sls_client, project, logstore, (json_contents(g) for g in chunks(records, per_group)))


def group_of(sls_client, project: str, logstore: str, cursor: str, index: int) -> list[dict]:
    """The logs of log group `index` of the PullLogs page at `cursor`, as the dead letter names them."""
    response = sls_client.pull_logs(project, logstore, 0, cursor, count=index + 1)
    group = response.get_loggroup_list().LogGroups[index]
    return [orjson.loads(next(c.Value for c in log.Contents if c.Key == "content")) for log in group.Logs]


def assert_only_the_huge_record_dead_lettered(setup: Setup, sls_client, project: str, logstore: str, small: int,
                                              summary: dict) -> None:
    got = Counter(orjson.loads(r.value)["carID"] for r in read_all(setup.kafka.bootstrap, setup.topic))
    assert got == Counter(range(small)), (f"{small - len(set(got) & set(range(small)))} small record(s) missing, "
                                          f"{sum(got.values()) - len(got)} duplicated")
    dead = [orjson.loads(r.value) for r in read_all(setup.kafka.bootstrap, setup.dlq)]
    assert len(dead) == 1, f"{len(dead)} dead letters: {[d['reason'][:80] for d in dead[:3]]}"
    [letter] = dead
    assert "Kafka refused the record" in letter["reason"]
    source = letter["source"]
    assert source["cursor"], f"dead letter without provenance: {source}"
    assert source["group"] >= 0, f"dead letter without provenance: {source}"
    assert HUGE_CAR in [r["carID"] for r in group_of(sls_client, project, logstore, source["cursor"], source["group"])]
    assert (summary["produced"], summary["dead_lettered"]) == (small, 1)


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
def test_scenario6_one_record_over_the_topic_limit_only_it_is_dead_lettered(
        mode, setup, topic_factory, sls_client, sls_project, sls_proxy_env, caplog):
    """Topic max.message.bytes=500000, one 600 KB record among 3,000 small ones.

    Exactly-once cannot find the guilty record without writing outside the transaction: it must say at once
    what to change (here the refusal comes at commit), and with the producer limit at the topic's, the record is
    refused by the client and dead-lettered inside the transaction.
    """
    limited_topic(setup, topic_factory, 500_000, mode, KAFKA_TRANSACTION_MAX_RECORDS="100000")
    logstore = one_shard(sls_client, sls_project)
    write_with_one_huge(sls_client, sls_project, logstore, 3000, 600_000, per_group=50)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)

    if mode == "exactly-once":
        started = time.monotonic()
        with pytest.raises(FatalSinkError, match=r"max\.message\.bytes") as failed:
            fc.handler(event, fc312_context(timeout=30))
        assert "at or below the topic's max.message.bytes" in str(failed.value)
        assert setup.topic in str(failed.value)
        assert not [r for r in caplog.records if "transaction aborted" in r.getMessage()], "retried in vain"
        assert time.monotonic() - started < 10
        assert read_all(setup.kafka.bootstrap, setup.topic) == []
        setup.configure(KAFKA_PRODUCER_CONFIG='{"message.max.bytes": 500000}')

    summary = fc.handler(event, fc312_context(timeout=30))

    assert summary["cursor_reached"] == orjson.loads(event)["source"]["endCursor"]
    assert_only_the_huge_record_dead_lettered(setup, sls_client, sls_project, logstore, 3000, summary)


def test_scenario6_topic_limit_below_the_producer_batch_one_dead_letter(
        setup, topic_factory, sls_client, sls_project, sls_proxy_env, caplog):
    """Topic max.message.bytes=10000: most producer batches of tiny records are over it, though no record is."""
    limited_topic(setup, topic_factory, 10_000, "at-least-once")
    logstore = one_shard(sls_client, sls_project)
    write_with_one_huge(sls_client, sls_project, logstore, 3000, 12_000, per_group=100)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)

    summary = fc.handler(event, fc312_context(timeout=30))

    assert summary["cursor_reached"] == orjson.loads(event)["source"]["endCursor"]
    assert_only_the_huge_record_dead_lettered(setup, sls_client, sls_project, logstore, 3000, summary)
    # The user is told why so many records needed a second send, and what to change.
    assert any("message.max.bytes" in r.getMessage() and setup.topic in r.getMessage() for r in caplog.records)


def test_scenario8_exactly_once_refusal_mid_transaction_is_explained_at_once(
        setup, topic_factory, sls_client, sls_project, sls_proxy_env, sls_faults, caplog):
    """The refusal arrives while the transaction is still producing: the next produce fails with _STATE.

    That error says nothing; the transaction's delivery reports do, and every retry would fail the same way.
    """
    limited_topic(setup, topic_factory, 500_000, "exactly-once", KAFKA_TRANSACTION_MAX_RECORDS="100000")
    logstore = one_shard(sls_client, sls_project)
    write_with_one_huge(sls_client, sls_project, logstore, 3000, 600_000, per_group=50, at=3)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    # Slow pages: the broker's answer for the first page comes while later pages are still being produced.
    sls_faults.delay(op="pull_logs", seconds=0.2, times=1000)
    started = time.monotonic()

    with pytest.raises(FatalSinkError) as failed:
        fc.handler(event, fc312_context(timeout=30))

    assert time.monotonic() - started < 10
    assert not [r for r in caplog.records if "transaction aborted" in r.getMessage()], "retried in vain"
    text = str(failed.value)
    assert "MSG_SIZE_TOO_LARGE" in text, text
    assert "at or below the topic's max.message.bytes" in text
    assert setup.topic in text
    assert read_all(setup.kafka.bootstrap, setup.topic) == []
