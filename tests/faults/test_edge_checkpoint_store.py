"""Issue 14 item 7: faults of the SLS consumer-group checkpoint store, through the real SDK and broker."""

from __future__ import annotations

import orjson
import pytest

from common.errors import CheckpointError
from processor import handler as fc
from tests.faults.test_fault_matrix import Setup, invoke_until_done, one_shard
from tests.kafka_helpers import read_all
from tests.pipeline_support import fc312_context, shard_events


@pytest.fixture
def setup(kafka, topic_factory, tmp_path, function_env):
    s = Setup("at-least-once", kafka, topic_factory, tmp_path, function_env)
    s.configure(CHECKPOINT_STORE="sls", SLS_PULL_COUNT="5")
    return s


def checkpoint(sls_client, project: str, logstore: str, group: str = "sls-kafka-processor") -> str | None:
    resp = sls_client.get_check_point(project, logstore, group, 0)
    entries = resp.get_consumer_group_check_points() or []
    return entries[0]["checkpoint"] if entries else None


@pytest.mark.parametrize("fault", ["truncate", "error"])
def test_transient_checkpoint_write_failures_are_retried_not_redelivered(setup, sls_client, sls_project,
                                                                         sls_proxy_env, sls_faults, fault):
    """Checkpoint writes that fail transiently (past the SDK's own 10 tries) are retried within the budget."""
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 4000)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    if fault == "truncate":
        sls_faults.truncate(op="update_check_point", times=1)
    else:
        sls_faults.error(op="update_check_point", code="InternalServerError", times=12)

    summary = fc.handler(event, fc312_context(timeout=60))

    assert summary["cursor_reached"] == orjson.loads(event)["source"]["endCursor"]
    assert summary["sls_retries"] > 0
    assert checkpoint(sls_client, sls_project, logstore) == summary["cursor_reached"]
    assert setup.check() == 0


def test_logstore_at_the_consumer_group_cap_fails_before_producing(setup, sls_client, sls_project, sls_proxy_env,
                                                                   kafka):
    logstore = one_shard(sls_client, sls_project)
    for i in range(30):
        sls_client.create_consumer_group(sls_project, logstore, f"someone-else-{i}", 60)
    setup.write(sls_client, sls_project, logstore, 500)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)

    with pytest.raises(CheckpointError, match=r"most consumer groups SLS allows \(30\)"):
        fc.handler(event, fc312_context(timeout=20))

    assert read_all(kafka.bootstrap, setup.topic, timeout=3) == []
    sls_client.delete_consumer_group(sls_project, logstore, "someone-else-0")
    invoke_until_done(event)
    assert setup.check() == 0
