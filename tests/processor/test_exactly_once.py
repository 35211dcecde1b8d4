"""Exactly-once mode: records and cursor in one transaction; read_committed shows every record once."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest

from processor import handler as fc
from tests.kafka_helpers import read_all
from tests.pipeline_support import chunks, driving_record, fc312_context, json_contents, put_groups, shard_events
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET


@pytest.fixture
def eo_function(kafka, topic_factory, function_env):
    topic, dlq, ckpt = topic_factory(partitions=3), topic_factory(), topic_factory(config={"cleanup.policy": "compact"})
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "KAFKA_TOPIC": topic, "KAFKA_DLQ_TOPIC": dlq,
           "DELIVERY_MODE": "exactly-once", "KAFKA_CHECKPOINT_TOPIC": ckpt,
           "KAFKA_TRANSACTION_TIMEOUT_MS": "10000", "KAFKA_TRANSACTION_MAX_RECORDS": "2000",
           "ALIBABA_CLOUD_ACCESS_KEY_ID": SLS_ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SLS_ACCESS_KEY_SECRET,
           "INVOCATION_TIMEOUT_SECONDS": "60", "TIME_BUDGET_MARGIN_SECONDS": "2"}
    function_env.set(env)
    return topic, dlq, ckpt


def test_exactly_once_four_shards_then_retry_sends_nothing(eo_function, sls_client, sls_project, sls_proxy_env,
                                                           kafka):
    topic, _, ckpt = eo_function
    sls_client.create_logstore(sls_project, "driving", ttl=1, shard_count=4)
    rng = random.Random(11)
    records = [driving_record(i, rng) for i in range(12_000)]
    put_groups(sls_client, sls_project, "driving", (json_contents(g) for g in chunks(records, 100)))
    events = shard_events(sls_client, sls_proxy_env, sls_project, "driving")

    first = [fc.handler(ev, fc312_context()) for ev in events]
    again = [fc.handler(ev, fc312_context()) for ev in events]

    expected = Counter(orjson.dumps({"speed": r["speed"], "carID": r["carID"]}) for r in records)
    assert Counter(r.value for r in read_all(kafka.bootstrap, topic)) == expected
    assert sum(s["produced"] for s in first) == 12_000
    assert all(s["already_delivered"] for s in again)
    cursors = {orjson.loads(r.value)["shard"]: orjson.loads(r.value)["cursor"] for r in read_all(kafka.bootstrap, ckpt)}
    assert cursors == {orjson.loads(ev)["source"]["shardId"]: orjson.loads(ev)["source"]["endCursor"] for ev in events}
