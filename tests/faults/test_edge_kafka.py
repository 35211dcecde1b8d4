"""Issue 14, items 3 and 5: a Kafka nobody can reach, and topics that do not exist, against the real broker.

Each fails within seconds with an error naming what is wrong (the bootstrap servers, the missing topic and how
to create it), logs a bounded number of lines, and re-sends no good record while it lasts.
"""

from __future__ import annotations

import logging
import re
import time

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from common.errors import ConfigError, ProcessorError
from devstack.kafka import create_topics, free_port
from processor import handler as fc
from tests.faults.test_fault_matrix import MODES, Setup, one_shard
from tests.kafka_helpers import read_all
from tests.pipeline_support import chunks, fc312_context, json_contents, put_groups, shard_events

# The "cannot reach Kafka" line is repeated at most this often while it lasts.
REPORT_SECONDS = 10


@pytest.fixture(params=MODES)
def setup(request, kafka, topic_factory, tmp_path, function_env):
    return Setup(request.param, kafka, topic_factory, tmp_path, function_env)


def test_item3_unreachable_broker_fails_within_seconds_naming_it(setup, sls_client, sls_project, sls_proxy_env,
                                                                 caplog, capfd):
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    setup.configure(KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 800)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    caplog.set_level(logging.INFO)
    started = time.monotonic()

    with pytest.raises(ProcessorError, match=f"cannot reach Kafka at {re.escape(bootstrap)}") as failed:
        fc.handler(event, fc312_context(timeout=600))

    elapsed = time.monotonic() - started
    assert elapsed < 30, f"took {elapsed:.0f}s against a 600 s function timeout"
    assert "Connection refused" in str(failed.value)
    lines = [r.getMessage() for r in caplog.records if "cannot reach Kafka at" in r.getMessage()]
    assert lines, "no log line said that Kafka cannot be reached"
    assert all(bootstrap in line and "Connection refused" in line for line in lines), lines
    assert len(lines) <= 2 * (1 + elapsed / REPORT_SECONDS), f"{len(lines)} lines in {elapsed:.0f}s"
    # librdkafka's own log goes through Python logging, not raw to stderr, and is not a flood.
    raw = [line for line in capfd.readouterr().err.splitlines() if re.match(r"%\d\|", line)]
    assert raw == [], raw[:3]
    refused = [r for r in caplog.records if "Connection refused" in r.getMessage()]
    assert len(refused) <= len(lines) + 4, [r.getMessage() for r in refused][:10]


def test_item3_broker_lost_mid_invocation_is_named_in_the_error(setup, sls_client, sls_project, sls_proxy_env,
                                                                kafka, sls_faults):
    """A warm instance whose broker goes away: the invocation ends naming it, long before its 600 s timeout."""
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 400)
    [first] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    fc.handler(first, fc312_context(timeout=60))
    setup.write(sls_client, sls_project, logstore, 400, seed=2)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    kafka.kill()
    try:
        started = time.monotonic()
        with pytest.raises(ProcessorError, match=f"cannot reach Kafka at {re.escape(kafka.bootstrap)}"):
            fc.handler(event, fc312_context(timeout=600))
        assert time.monotonic() - started < 30
    finally:
        kafka.start()
    fc.handler(event, fc312_context(timeout=60))
    setup.check()


@pytest.mark.parametrize("which", ["KAFKA_TOPIC", "KAFKA_DLQ_TOPIC"])
def test_item5_initialize_names_a_missing_topic_and_how_to_create_it(which, setup, monkeypatch):
    missing = f"missing-{which.lower()}-{time.monotonic_ns()}"
    monkeypatch.setenv(which, missing)
    started = time.monotonic()
    with pytest.raises(ConfigError) as failed:
        fc.initialize(None)
    assert time.monotonic() - started < 10
    text = str(failed.value)
    assert f"'{missing}'" in text
    assert which in text
    assert f"--create --topic {missing}" in text
    assert fc._runtime is None, "a failed initialize must not leave a runtime for the handler to use"


def test_item5_dlq_deleted_later_is_named_and_good_records_are_not_resent(setup, sls_client, sls_project,
                                                                          sls_proxy_env, kafka):
    # A topic that disappears is noticed after this long (librdkafka's default is 30 s; a user setting).
    setup.configure(KAFKA_PRODUCER_CONFIG='{"topic.metadata.propagation.max.ms": 3000}')
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 500)
    [first] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    fc.handler(first, fc312_context(timeout=60))
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.delete_topics([setup.dlq])[setup.dlq].result(30)
    good = [{"speed": 1, "carID": 50_000 + i} for i in range(300)]
    put_groups(sls_client, sls_project, logstore,
               (json_contents(g) for g in chunks([*good[:150], {"speed": "fast", "carID": 1}, *good[150:]], 50)))
    setup.expected.update(orjson.dumps(r) for r in good)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)

    errors = []
    sent: list[int] = []
    for _ in range(3):
        with pytest.raises(ProcessorError) as failed:
            fc.handler(event, fc312_context(timeout=60))
        errors.append(str(failed.value))
        time.sleep(2)  # records the failed attempt had in flight (aborted ones too) are in the log by now
        sent.append(len(read_all(kafka.bootstrap, setup.topic, isolation="read_uncommitted")))
    assert all(setup.dlq in e for e in errors), "\n".join(errors)
    assert f"--create --topic {setup.dlq}" in errors[-1]
    # The retries failed before producing: nothing of the range was sent again.
    assert sent[1:] == sent[:1] * 2, sent

    create_topics(kafka.bootstrap, [setup.dlq])
    summary = fc.handler(event, fc312_context(timeout=60))
    assert summary["dead_lettered"] == 1
    setup.check()
