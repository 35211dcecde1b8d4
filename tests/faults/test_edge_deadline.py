"""Deadlines at the edges: a hung SLS or a frozen broker must not hold an invocation past FC's timeout.

FC kills an invocation at its timeout; the function must end before that on its own, with the progress it made
saved, so that the trigger's retry continues from there.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter

import orjson
import pytest

from checkpoints.base import CheckpointKey
from checkpoints.kafka_txn import KafkaCheckpointStore
from common.cursors import cursor_position
from common.deadline import Deadline
from common.errors import CheckpointError, ProcessorError
from processor import handler as fc
from processor.sls.shards import cursor_from_position
from tests.faults.test_fault_matrix import MODES, Setup, one_shard
from tests.kafka_helpers import read_all
from tests.pipeline_support import driving_record, fc312_context, shard_events

FC_TIMEOUT = 10.0
GROUP_RECORDS = 50


def _setup(mode: str, kafka, topic_factory, tmp_path, function_env) -> Setup:
    s = Setup(mode, kafka, topic_factory, tmp_path, function_env)
    # One transaction per page (4 then 5 groups of 50 records), so committed progress is every page delivered.
    s.configure(INVOCATION_TIMEOUT_SECONDS=str(FC_TIMEOUT), TIME_BUDGET_MARGIN_SECONDS="1",
                KAFKA_TRANSACTION_MAX_RECORDS="200")
    return s


@pytest.fixture(params=MODES)
def setup(request, kafka, topic_factory, tmp_path, function_env):
    return _setup(request.param, kafka, topic_factory, tmp_path, function_env)


@pytest.fixture
def exactly_once(kafka, topic_factory, tmp_path, function_env):
    return _setup("exactly-once", kafka, topic_factory, tmp_path, function_env)


def projected(records: list[dict]) -> Counter[bytes]:
    return Counter(orjson.dumps({"speed": r["speed"], "carID": r["carID"]}) for r in records)


def invoke_within_fc_timeout(event: bytes) -> tuple[BaseException | dict, float]:
    """Invoke like FC; fail the test if the invocation is still running when FC would have killed it."""
    outcome: list[BaseException | dict] = []

    def call() -> None:
        try:
            outcome.append(fc.handler(event, fc312_context(timeout=FC_TIMEOUT)))
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(FC_TIMEOUT)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"the invocation was still running at FC's {FC_TIMEOUT:.0f} s timeout"
    return outcome[0], elapsed


def test_hung_pulls_end_the_invocation_before_fc_timeout_with_progress_saved(setup, sls_client, sls_project,
                                                                             sls_proxy_env, sls_faults, kafka):
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 40 * GROUP_RECORDS, per_group=GROUP_RECORDS)
    rng = random.Random(1)  # Setup.write's records, to know which ones the first pages hold
    records = [driving_record(i, rng) for i in range(40 * GROUP_RECORDS)]
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    # Three pages (4, 5 and 5 groups) come back at once; every later pull hangs for longer than FC's timeout,
    # past one SDK request timeout (30 s) and its own retries.
    sls_faults.delay(op="pull_logs", seconds=0.01, times=3)
    sls_faults.delay(op="pull_logs", seconds=45, times=20)
    groups_before_hang = 4 + 5 + 5

    outcome, elapsed = invoke_within_fc_timeout(event)

    assert isinstance(outcome, ProcessorError), f"the invocation should fail on the hung pull, got {outcome!r}"
    assert isinstance(outcome, TimeoutError), outcome
    print(f"[{setup.mode}] ended after {elapsed:.1f}s: {outcome}")
    delivered = projected(records[:groups_before_hang * GROUP_RECORDS])
    isolation = "read_committed" if setup.mode == "exactly-once" else "read_uncommitted"
    assert Counter(r.value for r in read_all(kafka.bootstrap, setup.topic, isolation=isolation)) == delivered
    sls_faults.clear()

    summary = fc.handler(event, fc312_context(timeout=30))

    # The retry starts exactly where the delivered pages end: the saved checkpoint is the progress made.
    begin = cursor_position(orjson.loads(event)["source"]["beginCursor"])
    assert summary["start_cursor"] == cursor_from_position(begin + groups_before_hang)
    assert summary["cursor_reached"] == orjson.loads(event)["source"]["endCursor"]
    assert setup.check() == 0


def test_exactly_once_checkpoint_read_from_a_frozen_broker_ends_before_fc_timeout(exactly_once, sls_client,
                                                                                  sls_project, sls_proxy_env, kafka):
    """A cold instance reads its checkpoint from the topic: with the broker frozen that read ends by the deadline,
    naming the topic. A warm one trusts its producer's last commit and reads nothing, so it still answers."""
    setup = exactly_once
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 500, per_group=GROUP_RECORDS)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    fc.handler(event, fc312_context(timeout=30))
    settings = fc._runtime.settings
    cold = KafkaCheckpointStore(settings.kafka.producer_config(), settings.kafka.checkpoint_topic)
    key = CheckpointKey(sls_project, logstore, 0)
    broker = kafka.process
    assert broker is not None, "this test freezes the suite's own broker"

    os.kill(broker.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(CheckpointError, match=settings.kafka.checkpoint_topic):
            cold.load(key, Deadline.after(FC_TIMEOUT - 1))
        elapsed = time.monotonic() - started
        warm, warm_elapsed = invoke_within_fc_timeout(event)
    finally:
        os.kill(broker.pid, signal.SIGCONT)
        cold.close()

    print(f"frozen broker: the cold checkpoint read ended after {elapsed:.1f}s")
    assert elapsed < FC_TIMEOUT
    assert warm_elapsed < FC_TIMEOUT
    # The warm producer first checks the broker answers (within the budget): it either finds the range proven
    # by its own last commit, or names the Kafka it cannot reach. It never waits for FC to kill it.
    if isinstance(warm, dict):
        assert warm["already_delivered"], warm
    else:
        assert isinstance(warm, ProcessorError), warm
        assert f"cannot reach Kafka at {kafka.bootstrap}" in str(warm), warm
    assert setup.check() == 0
