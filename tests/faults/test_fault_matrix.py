"""The fault matrix (rows 1-9): each fault against the real broker and the emulator, in both delivery modes.

Exactly-once must read back (read_committed) every source record exactly once; at-least-once must lose nothing
and its duplicates are counted and bounded by what was in flight.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from common.errors import FatalSinkError, ProcessorError
from processor import handler as fc
from processor.delivery.at_least_once import MAX_IN_FLIGHT_PAGES
from tests.kafka_helpers import read_all
from tests.pipeline_support import chunks, driving_record, fc312_context, json_contents, put_groups, shard_events
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET
from tests.waiting import wait_for

MODES = ["at-least-once", "exactly-once"]
REPO = Path(__file__).resolve().parents[2]


class Setup:
    """One configured function: its topics, environment, and the data it must deliver."""

    def __init__(self, mode: str, kafka, topic_factory, tmp_path: Path, function_env) -> None:
        self.mode, self.kafka, self.function_env = mode, kafka, function_env
        self.topic, self.dlq = topic_factory(partitions=3), topic_factory()
        self.env = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "KAFKA_TOPIC": self.topic, "KAFKA_DLQ_TOPIC": self.dlq,
            "DELIVERY_MODE": mode, "KAFKA_CHECKPOINT_TOPIC": topic_factory(config={"cleanup.policy": "compact"}),
            "KAFKA_TRANSACTION_TIMEOUT_MS": "10000", "KAFKA_TRANSACTION_MAX_RECORDS": "500",
            "CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "SLS_PULL_COUNT": "5",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": SLS_ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SLS_ACCESS_KEY_SECRET,
            "INVOCATION_TIMEOUT_SECONDS": "30", "TIME_BUDGET_MARGIN_SECONDS": "1",
        }
        self.expected: Counter[bytes] = Counter()
        self.configure()

    def configure(self, **overrides: str) -> None:
        self.env.update(overrides)
        self.function_env.set(self.env)

    def write(self, client, project: str, logstore: str, n: int, per_group: int = 50, seed: int = 1) -> None:
        rng = random.Random(seed)
        records = [driving_record(i, rng) for i in range(n)]
        put_groups(client, project, logstore, (json_contents(g) for g in chunks(records, per_group)))
        self.expected.update(orjson.dumps({"speed": r["speed"], "carID": r["carID"]}) for r in records)

    def check(self) -> int:
        """Assert nothing is lost (and, exactly-once, nothing duplicated); return the duplicate count."""
        got = Counter(r.value for r in read_all(self.kafka.bootstrap, self.topic, isolation="read_committed"))
        missing = self.expected - got
        assert not missing, f"{sum(missing.values())} record(s) lost"
        duplicates = sum((got - self.expected).values())
        assert set(got) == set(self.expected)
        if self.mode == "exactly-once":
            assert duplicates == 0, f"exactly-once delivered {duplicates} duplicate(s)"
        print(f"[{self.mode}] {sum(self.expected.values())} records, {duplicates} duplicate(s)")
        return duplicates


@pytest.fixture(params=MODES)
def setup(request, kafka, topic_factory, tmp_path, function_env):
    return Setup(request.param, kafka, topic_factory, tmp_path, function_env)


def invoke_until_done(event: bytes, attempts: int = 6, timeout: float = 30) -> tuple[dict, int]:
    """Invoke like the trigger does, retrying a failed invocation; returns the final summary and failures."""
    errors: list[str] = []
    for _ in range(attempts):
        try:
            return fc.handler(event, fc312_context(timeout=timeout)), len(errors)
        except (ProcessorError, TimeoutError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    pytest.fail(f"the range was not delivered after {attempts} attempts: {errors}")


def high_watermark(bootstrap: str, topic: str) -> int:
    """Records written to a topic so far, committed or not (3 partitions)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "hw-probe", "isolation.level": "read_uncommitted"})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)[1] for p in range(3))
    finally:
        c.close()


def one_shard(client, project: str) -> str:
    client.create_logstore(project, "driving", ttl=1, shard_count=1)
    return "driving"


def test_row1_broker_killed_mid_transaction_then_retried(setup, sls_client, sls_project, sls_proxy_env, sls_faults,
                                                         kafka):
    setup.configure(INVOCATION_TIMEOUT_SECONDS="10")
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 8000)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    sls_faults.delay(op="pull_logs", seconds=0.1, times=1000)
    outcome: list[BaseException | dict] = []
    thread = threading.Thread(target=lambda: outcome.append(_call(event, timeout=10)))
    thread.start()
    wait_for(lambda: high_watermark(kafka.bootstrap, setup.topic) > 600, 30, "600 records in Kafka")
    kafka.kill()
    thread.join(60)
    kafka.start()
    sls_faults.clear()
    assert isinstance(outcome[0], BaseException), "the invocation must fail while the broker is down"

    summary, _ = invoke_until_done(event)

    assert summary["cursor_reached"] == orjson.loads(event)["source"]["endCursor"]
    setup.check()


def _call(event: bytes, timeout: float) -> BaseException | dict:
    try:
        return fc.handler(event, fc312_context(timeout=timeout))
    except BaseException as exc:
        return exc


def test_row2_processor_killed_mid_range_then_reinvoked(setup, sls_client, sls_project, sls_proxy_env, sls_faults,
                                                        sls_emulator, kafka, tmp_path):
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 8000)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    event_file = tmp_path / "event.json"
    event_file.write_bytes(event)
    sls_faults.delay(op="pull_logs", seconds=0.1, times=1000)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "processor", "invoke", "--event", str(event_file)], env=env,
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: high_watermark(kafka.bootstrap, setup.topic) > 600, 30, "600 records in Kafka")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    sls_faults.clear()

    summary, _ = invoke_until_done(event)

    assert summary["cursor_reached"] == orjson.loads(event)["source"]["endCursor"]
    duplicates = setup.check()
    assert summary["resumed_from_checkpoint"]
    # Re-sent at most: the pages in flight when the process died (at-least-once; exactly-once re-sends none).
    assert duplicates <= (MAX_IN_FLIGHT_PAGES + 1) * 5 * 50


def test_row3_two_instances_race_on_the_same_range(setup, sls_client, sls_project, sls_proxy_env, sls_faults):
    from processor.credentials import Credentials
    from processor.event import TriggerEvent
    from processor.runtime import Runtime

    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 6000)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    sls_faults.delay(op="pull_logs", seconds=0.05, times=1000)
    creds = Credentials(SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET)
    runtimes = [Runtime.from_env(), Runtime.from_env()]
    results: list[object] = [None, None]

    def run(i: int) -> None:
        try:
            results[i] = runtimes[i].process(TriggerEvent.from_json(event), creds, 30)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    threads[0].start()
    time.sleep(0.5)
    threads[1].start()
    for t in threads:
        t.join(90)
    sls_faults.clear()
    for r in runtimes:
        r.close(2)
    failed = [r for r in results if isinstance(r, BaseException)]
    if setup.mode == "exactly-once":
        # The later init_transactions fences the earlier instance, whose next commit fails for good.
        assert len(failed) == 1, results
        assert isinstance(failed[0], FatalSinkError), failed[0]
        assert "fenced" in str(failed[0]).lower()
        invoke_until_done(event)  # the trigger retries the fenced one: nothing left to send
    else:
        assert failed == [], failed
    duplicates = setup.check()
    if setup.mode == "at-least-once":
        # Each instance delivers every record it read exactly once (idempotent producer): the duplicates are
        # exactly the overlap of their reads, the whole range when the later one started before the earlier one
        # saved a checkpoint.
        assert duplicates == sum(r.records_read for r in results) - 6000, results


def test_row4_sls_5xx_bursts_and_dropped_connections(setup, sls_client, sls_project, sls_proxy_env, sls_faults):
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 3000)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    for _ in range(3):
        sls_faults.error(op="pull_logs", code="InternalServerError", times=3)
        sls_faults.drop(op="pull_logs", times=2)
    _, failures = invoke_until_done(event)
    assert failures == 0
    # The SDK retries 5xx and dropped connections itself (10 x 1 s); our policy retries what gets past it.
    assert sls_faults.pending() == []
    setup.check()


def test_row5_read_quota_throttling_for_seconds(setup, sls_client, sls_project, sls_proxy_env, sls_faults):
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 2000)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    sls_faults.error(op="pull_logs", code="ShardReadQuotaExceed", times=4)
    sls_faults.error(op="pull_logs", code="ReadQuotaExceed", times=3)
    started = time.monotonic()
    summary, failures = invoke_until_done(event)
    assert failures == 0
    assert summary["sls_retries"] == 7
    assert time.monotonic() - started > 2  # backed off, did not hammer
    setup.check()


def test_row6_time_budget_runs_out_mid_range(setup, sls_client, sls_project, sls_proxy_env, sls_faults):
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 5000)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    sls_faults.delay(op="pull_logs", seconds=0.3, times=1000)
    with pytest.raises(TimeoutError, match="time budget"):
        fc.handler(event, fc312_context(timeout=4))
    sls_faults.clear()
    summary = fc.handler(event, fc312_context(timeout=30))
    assert summary["resumed_from_checkpoint"] is True
    assert 0 < summary["records_read"] < 5000
    setup.check()


def test_row7_expired_cursor_is_reported_as_a_gap(setup, sls_client, sls_project, sls_proxy_env, sls_emulator,
                                                  sls_clock):
    logstore = one_shard(sls_client, sls_project)
    put_groups(sls_client, sls_project, logstore, [json_contents([{"speed": 1, "carID": i}]) for i in range(10)])
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    sls_clock.advance(100)
    setup.write(sls_client, sls_project, logstore, 300)
    sls_emulator.store.set_ttl_seconds(sls_project, logstore, 50)
    doc = orjson.loads(event)
    doc["source"]["endCursor"] = sls_client.get_end_cursor(sls_project, logstore, 0).get_cursor()
    summary = fc.handler(orjson.dumps(doc), fc312_context())
    assert [g["log_groups"] for g in summary["gaps"]] == [10]
    setup.check()


def test_row8_shard_split_parent_drained_children_consumed(setup, sls_client, sls_project, sls_proxy_env):
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 2000, seed=1)
    sls_client.split_shard(sls_project, logstore, 0, "7fffffffffffffffffffffffffffffff")
    setup.write(sls_client, sls_project, logstore, 2000, seed=2)
    shards = {s["shardID"]: s["status"] for s in sls_client.list_shards(sls_project, logstore).get_shards_info()}
    assert shards[0] == "readonly"
    assert len(shards) == 3
    for event in shard_events(sls_client, sls_proxy_env, sls_project, logstore):
        invoke_until_done(event)
    setup.check()


def test_row9_record_over_message_max_bytes_goes_to_dlq(setup, sls_client, sls_project, sls_proxy_env, kafka):
    setup.configure(PROJECTION_FIELDS="speed:number,carID:int,note:str?")
    logstore = one_shard(sls_client, sls_project)
    small = [{"speed": 5, "carID": i} for i in range(20)]
    huge = {"speed": 9, "carID": 777, "note": "n" * 1_200_000}
    put_groups(sls_client, sls_project, logstore, [json_contents([*small[:10], huge, *small[10:]])])
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    summary = fc.handler(event, fc312_context())
    got = [orjson.loads(r.value) for r in read_all(kafka.bootstrap, setup.topic)]
    assert sorted(g["carID"] for g in got) == list(range(20))
    dead = [orjson.loads(r.value) for r in read_all(kafka.bootstrap, setup.dlq)]
    assert len(dead) == 1
    assert "Kafka refused the record" in dead[0]["reason"]
    assert dead[0]["original_truncated"]["size"] > 1_200_000
    assert (summary["produced"], summary["dead_lettered"]) == (20, 1)
