"""Fault matrix row 10, the soak: a million records over four shards through the FC handler, under random faults.

Data is written through the SDK in rounds; after each round the trigger's view is cut: one event per shard for
[end of the previous round, end of this round), released no faster than the trigger's interval. The events are
invoked in order, each retried until it succeeds (bounded, as the trigger's maxRetryTime), while a background
thread injects a fault every few seconds: the broker SIGKILLed and restarted (row 1), SLS 5xx bursts and dropped
connections during pulls (row 4), 403 ReadQuotaExceed/ShardReadQuotaExceed throttling (row 5). The RNG is seeded
(SOAK_SEED) and every fault is logged and printed.

Exactly-once must end with the read_committed multiset of the data topic equal to the source multiset; the
at-least-once variant must lose nothing and reports its duplicates. Sizes: SOAK_RECORDS (default 1,000,000) and
SOAK_ALO_RECORDS (default 100,000).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aliyun.log import LogClient, LogItem, PutLogsRequest

from checkpoints.base import CheckpointKey
from checkpoints.file import FileCheckpointStore
from common.errors import ProcessorError
from devstack.kafka import KafkaBroker
from devstack.sls_emulator import FaultInjector
from devstack.sls_emulator.faults import Fault
from processor import handler as fc
from processor.event import TriggerEvent
from tests.kafka_helpers import KafkaUnderTest, read_all
from tests.pipeline_support import fc312_context
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET

pytestmark = pytest.mark.slow  # the soak

log = logging.getLogger("soak")

SHARDS = 4
LOGSTORE = "soak"
# Logs per group and per PutLogs call: big groups keep the SDK's per-request cost off the write path.
GROUP_SIZE = 1000
# The SLS trigger fires at most every 3 s; a round's events are not released before that.
TRIGGER_INTERVAL_SECONDS = 3.0
ROUNDS = 10
# Per event: several pulls and transactions, so faults land inside ranges, not only between them.
PULL_COUNT = 5
TRANSACTION_MAX_RECORDS = 10_000
# Gaps between the first faults, one of each kind.
FIRST_ROUND_GAP_SECONDS = (0.5, 1.5)
# Between a failed invocation and its retry, like the trigger's retry pause.
RETRY_PAUSE_SECONDS = 1.0
# The trigger retries a failed invocation as often as the shipped s.yaml tells it (`maxRetryTime`), then moves on.
MAX_RETRY_TIME = yaml.safe_load((Path(__file__).resolve().parents[2] / "s.yaml").read_text())["vars"]["maxRetryTime"]

BROKER_KILL = "broker-sigkill"  # row 1
SLS_5XX, SLS_DROP = "sls-5xx-burst", "sls-dropped-connections"  # row 4
SLS_THROTTLE = "sls-403-throttling"  # row 5
KINDS = (BROKER_KILL, SLS_5XX, SLS_DROP, SLS_THROTTLE)


@dataclass(frozen=True)
class SoakPlan:
    """Size, mode and the bounds on faults and retries of one soak run."""

    records: int
    mode: str
    seed: int
    fault_gap_seconds: tuple[float, float] = (1.5, 4.0)
    max_faults: int = 20
    max_broker_kills: int = 3
    max_attempts_per_event: int = 1 + MAX_RETRY_TIME
    # The FC function timeout: short enough that a broker outage (~10 s) or an SLS burst fails some invocations
    # mid-range, so that the trigger's retries are part of the soak.
    function_timeout_seconds: float = 12.0
    max_failed_invocations: int = 60


@dataclass(frozen=True)
class SoakEvent:
    """One trigger event and what the soak knows about its range."""

    shard: int
    round: int
    body: bytes
    records: int

    @property
    def label(self) -> str:
        return f"shard {self.shard} round {self.round}"


@dataclass
class Injected:
    """One injected fault; `rule` is the emulator's rule, whose `times` counts down as requests hit it."""

    at: float
    kind: str
    detail: str
    rule: Fault | None = None
    times: int = 0

    @property
    def hits(self) -> int:
        """Requests the fault was served to (a broker kill counts as one)."""
        return self.times - self.rule.times if self.rule is not None else 1


@dataclass
class Failure:
    event: str
    attempt: int
    error: str
    message: str
    # One of ours (ProcessorError): a message that names what failed, not a raw library exception.
    clear: bool


@dataclass
class SoakOutcome:
    expected: Counter[bytes]
    shard_of: dict[bytes, int]
    end_cursors: dict[int, str]
    summaries: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    invocations: int = 0
    events: int = 0
    write_seconds: float = 0.0
    process_seconds: float = 0.0
    failed_records_bound: int = 0


def record_value(seq: int, rng: random.Random) -> tuple[dict[str, Any], bytes]:
    """A driving record (as Logtail ships it, a JSON line) and the projected value the function must produce."""
    doc = {"speed": rng.randint(0, 180), "carID": 10_000 + seq % 997, "manufacturer": rng.choice(["BenZ", "BYD", "VW"]),
           "zone": "China", "distance": rng.randint(1, 900), "endAt": "Beijing", "startAt": "Shanghai", "seq": seq}
    return doc, orjson.dumps({"seq": seq, "speed": doc["speed"], "carID": doc["carID"]})


class SoakWriter:
    """Writes the records round by round through the SDK, each group to a chosen shard (by hash key)."""

    def __init__(self, client: LogClient, endpoint: str, project: str, plan: SoakPlan) -> None:
        self.client = client
        self.endpoint = endpoint
        self.project = project
        self.plan = plan
        shards = client.list_shards(project, LOGSTORE).get_shards_info()
        self.hash_keys = {int(s["shardID"]): s["inclusiveBeginKey"] for s in shards}
        assert sorted(self.hash_keys) == list(range(SHARDS))
        self.cursors = {s: client.get_begin_cursor(project, LOGSTORE, s).get_cursor() for s in self.hash_keys}
        self.expected: Counter[bytes] = Counter()
        self.shard_of: dict[bytes, int] = {}
        self.seconds = 0.0

    def rounds(self) -> Iterator[list[SoakEvent]]:
        """Write each round, then yield its events (one per shard that received data)."""
        rng = random.Random(self.plan.seed)
        per_round = -(-self.plan.records // ROUNDS)
        group_index = 0
        for r in range(ROUNDS):
            started = time.monotonic()
            first, last = r * per_round, min((r + 1) * per_round, self.plan.records)
            written = dict.fromkeys(self.hash_keys, 0)
            for start in range(first, last, GROUP_SIZE):
                shard = group_index % SHARDS
                group_index += 1
                items = []
                for seq in range(start, min(start + GROUP_SIZE, last)):
                    doc, value = record_value(seq, rng)
                    item = LogItem(timestamp=1_700_000_000 + seq // 1000)
                    item.set_contents([("content", orjson.dumps(doc).decode())])
                    items.append(item)
                    self.expected[value] += 1
                    self.shard_of[value] = shard
                self.client.put_logs(PutLogsRequest(self.project, LOGSTORE, "driving", "10.0.0.7", items,
                                                    hashKey=self.hash_keys[shard]))
                written[shard] += len(items)
            events = []
            for shard in sorted(self.hash_keys):
                end = self.client.get_end_cursor(self.project, LOGSTORE, shard).get_cursor()
                if end == self.cursors[shard]:
                    continue
                ev = TriggerEvent(self.endpoint, self.project, LOGSTORE, shard, self.cursors[shard], end, {},
                                  "soak", f"task-{shard}", int(time.time()))
                events.append(SoakEvent(shard, r, orjson.dumps(ev.to_dict()), written[shard]))
                self.cursors[shard] = end
            self.seconds += time.monotonic() - started
            yield events


class FaultStorm(threading.Thread):
    """Injects one random fault every few seconds until stopped; the first four cover every kind once."""

    def __init__(self, plan: SoakPlan, kafka: KafkaUnderTest, faults: FaultInjector, project: str) -> None:
        super().__init__(name="soak-faults", daemon=True)
        self.plan = plan
        self.kafka = kafka
        self.faults = faults
        self.project = project
        self.rng = random.Random(plan.seed * 7919 + 1)
        self.injected: list[Injected] = []
        self.error: BaseException | None = None
        self._stop_requested = threading.Event()
        self._t0 = time.monotonic()

    def stop(self) -> None:
        self._stop_requested.set()

    def run(self) -> None:
        try:
            first = self.rng.sample(KINDS, len(KINDS))
            # Every kind once early (short gaps), so that even a small run is struck by all of them.
            while not self._stop_requested.wait(self.rng.uniform(*(FIRST_ROUND_GAP_SECONDS if first
                                                                   else self.plan.fault_gap_seconds))):
                if len(self.injected) >= self.plan.max_faults:
                    return
                kills = sum(f.kind == BROKER_KILL for f in self.injected)
                kinds = [k for k in KINDS if k != BROKER_KILL or kills < self.plan.max_broker_kills]
                kind = first[0] if first else self.rng.choice(kinds)
                if kind != BROKER_KILL and self.faults.pending():
                    # One SLS fault at a time: queued rules would add up to one endless outage.
                    continue
                if first:
                    first.pop(0)
                self._inject(kind)
        except BaseException as exc:
            self.error = exc
            log.exception("the fault thread failed")

    def _inject(self, kind: str) -> None:
        at = round(time.monotonic() - self._t0, 1)
        only = {"op": "pull_logs", "project": self.project}
        if kind == BROKER_KILL:
            down = self.rng.uniform(0.5, 3.0)
            self.kafka.kill()
            log.warning("soak fault at %.1fs: broker SIGKILLed, restart in %.1fs", at, down)
            time.sleep(down)
            started = time.monotonic()
            self.kafka.start()
            fault = Injected(at, kind, f"down {down:.1f}s, restart took {time.monotonic() - started:.1f}s")
        elif kind == SLS_5XX:
            # The SDK retries a 5xx 10 times by itself (1 s apart); a burst of 11 reaches the processor's own policy.
            code, times = self.rng.choice(["InternalServerError", "ServerBusy"]), self.rng.choice([2, 3, 4, 5, 11])
            fault = Injected(at, kind, f"{times} x {code}", self.faults.error(code=code, times=times, **only), times)
        elif kind == SLS_DROP:
            times = self.rng.randint(1, 4)
            fault = Injected(at, kind, f"{times} connection(s) closed unanswered",
                             self.faults.drop(times=times, **only), times)
        else:
            times = self.rng.randint(2, 5)
            if self.rng.random() < 0.5:
                shard = self.rng.randrange(SHARDS)
                rule = self.faults.error(code="ShardReadQuotaExceed", times=times, shard=shard, **only)
                fault = Injected(at, kind, f"{times} x ShardReadQuotaExceed on shard {shard}", rule, times)
            else:
                rule = self.faults.error(code="ReadQuotaExceed", times=times, **only)
                fault = Injected(at, kind, f"{times} x ReadQuotaExceed", rule, times)
        if kind != BROKER_KILL:
            log.warning("soak fault at %.1fs: %s", at, fault.detail)
        self.injected.append(fault)


def invoke_until_done(ev: SoakEvent, plan: SoakPlan, outcome: SoakOutcome) -> None:
    """Invoke the handler with `ev` until it succeeds, as the trigger retries a failed invocation."""
    for attempt in range(1, plan.max_attempts_per_event + 1):
        outcome.invocations += 1
        try:
            summary = fc.handler(ev.body, fc312_context(timeout=plan.function_timeout_seconds))
        except Exception as exc:
            outcome.failures.append(Failure(ev.label, attempt, type(exc).__name__, str(exc)[:300],
                                            isinstance(exc, ProcessorError)))
            # A failed attempt may have sent (at-least-once) any part of the range before failing.
            outcome.failed_records_bound += ev.records
            log.warning("%s attempt %d failed: %s: %s", ev.label, attempt, type(exc).__name__, exc)
            if len(outcome.failures) > plan.max_failed_invocations:
                pytest.fail(f"over {plan.max_failed_invocations} failed invocations; last: {exc!r}")
            time.sleep(RETRY_PAUSE_SECONDS)
            continue
        outcome.summaries.append(summary)
        return
    pytest.fail(f"{ev.label}: still failing after {plan.max_attempts_per_event} attempts; the trigger would give "
                f"up and the range would be lost. Failures: {outcome.failures[-3:]}")


def run_soak(plan: SoakPlan, kafka: KafkaUnderTest, client: LogClient, endpoint: str, project: str,
             faults: FaultInjector) -> tuple[SoakOutcome, FaultStorm]:
    """Write, trigger and invoke under the fault storm; returns what happened (the checks are the caller's)."""
    client.create_logstore(project, LOGSTORE, ttl=1, shard_count=SHARDS)
    writer = SoakWriter(client, endpoint, project, plan)
    pending: queue.Queue[list[SoakEvent] | BaseException | None] = queue.Queue()

    def write() -> None:
        t0 = time.monotonic()
        try:
            for r, events in enumerate(writer.rounds()):
                time.sleep(max(0.0, t0 + r * TRIGGER_INTERVAL_SECONDS - time.monotonic()))
                pending.put(events)
            pending.put(None)
        except BaseException as exc:
            pending.put(exc)

    outcome = SoakOutcome(writer.expected, writer.shard_of, writer.cursors)
    storm = FaultStorm(plan, kafka, faults, project)
    writer_thread = threading.Thread(target=write, name="soak-writer", daemon=True)
    started = time.monotonic()
    writer_thread.start()
    storm.start()
    try:
        while (item := pending.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            for ev in item:
                outcome.events += 1
                invoke_until_done(ev, plan, outcome)
    finally:
        storm.stop()
        storm.join()
        writer_thread.join(60)
        faults.clear()
        if isinstance(kafka, KafkaBroker) and kafka.process is None:
            kafka.start()
    outcome.process_seconds = time.monotonic() - started
    outcome.write_seconds = writer.seconds
    if storm.error is not None:
        raise storm.error
    return outcome, storm


@pytest.fixture
def soak_function(kafka, topic_factory, tmp_path, function_env):
    """Configure the function (environment) for `plan`; returns (data topic, dlq, checkpoint topic, checkpoint dir)."""

    def configure(plan: SoakPlan) -> tuple[str, str, str, Path]:
        topic, dlq, ckpt = (topic_factory(partitions=4), topic_factory(),
                            topic_factory(config={"cleanup.policy": "compact"}))
        env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "KAFKA_TOPIC": topic, "KAFKA_DLQ_TOPIC": dlq,
               "DELIVERY_MODE": plan.mode, "KAFKA_CHECKPOINT_TOPIC": ckpt, "CHECKPOINT_DIR": str(tmp_path / "ckpt"),
               "KAFKA_TRANSACTION_TIMEOUT_MS": "10000", "KAFKA_TRANSACTION_MAX_RECORDS": str(TRANSACTION_MAX_RECORDS),
               "PROJECTION_FIELDS": "seq:int,speed:number,carID:int", "SLS_PULL_COUNT": str(PULL_COUNT),
               "ALIBABA_CLOUD_ACCESS_KEY_ID": SLS_ACCESS_KEY_ID,
               "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SLS_ACCESS_KEY_SECRET,
               "INVOCATION_TIMEOUT_SECONDS": str(plan.function_timeout_seconds),
               "TIME_BUDGET_MARGIN_SECONDS": "1"}
        function_env.set(env)
        return topic, dlq, ckpt, tmp_path / "ckpt"

    return configure


def compare(expected: Counter[bytes], got: Counter[bytes]) -> tuple[int, int, int]:
    """(lost, duplicated, foreign) record counts; never a full diff, which for a million values is unreadable."""
    lost = sum((expected - got).values())
    extra = got - expected
    foreign = sum(n for v, n in extra.items() if v not in expected)
    return lost, sum(extra.values()) - foreign, foreign


def fault_table(storm: FaultStorm) -> dict[str, tuple[int, int]]:
    """Per kind: (faults injected, requests or kills they were served to)."""
    return {k: (sum(f.kind == k for f in storm.injected), sum(f.hits for f in storm.injected if f.kind == k))
            for k in KINDS}


def report(title: str, plan: SoakPlan, outcome: SoakOutcome, storm: FaultStorm, lines: list[str]) -> None:
    errors = Counter(f.error for f in outcome.failures)
    print(f"\n==== {title}: {plan.records:,} records over {SHARDS} shards, {plan.mode}, seed {plan.seed}")
    print(f"  write {outcome.write_seconds:.1f}s (in rounds, overlapping the processing); "
          f"write+process {outcome.process_seconds:.1f}s")
    print(f"  events {outcome.events}, invocations {outcome.invocations}, failed and retried "
          f"{len(outcome.failures)} {dict(errors)}, SLS call retries inside invocations "
          f"{sum(s['sls_retries'] for s in outcome.summaries)}")
    for kind, (count, hits) in fault_table(storm).items():
        print(f"  faults {kind}: {count} injected, {hits} served")
    for f in storm.injected:
        print(f"    t={f.at:6.1f}s {f.kind}: {f.detail}" + (f" ({f.hits} served)" if f.rule is not None else ""))
    for f in outcome.failures:
        print(f"    failed: {f.event} attempt {f.attempt}: {f.error}: {f.message[:160]}")
    for line in lines:
        print(f"  {line}")


def assert_every_fault_kind_struck(storm: FaultStorm) -> None:
    # Without this, a run whose faults all missed would pass and prove nothing.
    table = fault_table(storm)
    assert all(count >= 1 and hits >= 1 for count, hits in table.values()), table


@pytest.mark.soak
@pytest.mark.timeout(420)
def test_soak_exactly_once_million_records_under_faults_read_committed_equals_source(
        soak_function, kafka, sls_client, sls_project, sls_proxy_env, sls_faults):
    plan = SoakPlan(records=int(os.environ.get("SOAK_RECORDS", "1000000")), mode="exactly-once",
                    seed=int(os.environ.get("SOAK_SEED", "20240610")))
    topic, dlq, ckpt, _ = soak_function(plan)
    started = time.monotonic()

    outcome, storm = run_soak(plan, kafka, sls_client, sls_proxy_env, sls_project, sls_faults)

    verify_started = time.monotonic()
    records = read_all(kafka.bootstrap, topic, isolation="read_committed", timeout=180)
    got = Counter(r.value for r in records)
    lost, duplicated, foreign = compare(outcome.expected, got)
    wrong_shard = sum(1 for r in records if r.value in outcome.shard_of
                      and r.headers.get("sls.shard") != str(outcome.shard_of[r.value]).encode())
    uncommitted = sum(1 for _ in read_all(kafka.bootstrap, topic, isolation="read_uncommitted", timeout=180))
    checkpoints = {orjson.loads(r.value)["shard"]: orjson.loads(r.value)["cursor"]
                   for r in read_all(kafka.bootstrap, ckpt)}
    dead = read_all(kafka.bootstrap, dlq)
    report("SOAK exactly-once", plan, outcome, storm, [
        f"source {plan.records:,}; read_committed {len(records):,} ({len(got):,} distinct): lost {lost}, "
        f"duplicated {duplicated}, foreign {foreign}, from the wrong shard {wrong_shard}",
        f"read_uncommitted {uncommitted:,}: {uncommitted - len(records):,} records of aborted transactions hidden",
        f"verify {time.monotonic() - verify_started:.1f}s; total {time.monotonic() - started:.1f}s",
    ])

    assert (lost, duplicated, foreign) == (0, 0, 0)
    assert len(records) == plan.records
    assert got == outcome.expected
    assert wrong_shard == 0
    assert dead == []
    assert checkpoints == outcome.end_cursors
    # Each summary counts what its invocation committed, also when a transaction inside it was aborted.
    assert [s for s in outcome.summaries if s["records_read"] != s["produced"] + s["dead_lettered"]] == []
    assert_every_fault_kind_struck(storm)
    assert [f for f in outcome.failures if not f.clear] == []


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_soak_at_least_once_under_faults_loses_nothing_and_reports_duplicates(
        soak_function, kafka, sls_client, sls_project, sls_proxy_env, sls_faults):
    plan = SoakPlan(records=int(os.environ.get("SOAK_ALO_RECORDS", "100000")), mode="at-least-once",
                    seed=int(os.environ.get("SOAK_SEED", "20240610")) + 1, max_broker_kills=2)
    topic, dlq, _, ckpt_dir = soak_function(plan)
    started = time.monotonic()

    outcome, storm = run_soak(plan, kafka, sls_client, sls_proxy_env, sls_project, sls_faults)

    records = read_all(kafka.bootstrap, topic, timeout=120)
    got = Counter(r.value for r in records)
    lost, duplicated, foreign = compare(outcome.expected, got)
    store = FileCheckpointStore(ckpt_dir)
    checkpoints = {s: store.load(CheckpointKey(sls_project, LOGSTORE, s)).cursor for s in range(SHARDS)}
    report("SOAK at-least-once", plan, outcome, storm, [
        f"source {plan.records:,}; read back {len(records):,} ({len(got):,} distinct): lost {lost}, "
        f"duplicated {duplicated}, foreign {foreign}",
        f"duplicates bound (records of the ranges of failed attempts): {outcome.failed_records_bound:,}",
        f"total {time.monotonic() - started:.1f}s",
    ])

    assert (lost, foreign) == (0, 0)
    assert set(got) == set(outcome.expected)
    assert len(records) == plan.records + duplicated
    # A failed attempt re-sends at most its own range; nothing else may be duplicated.
    assert duplicated <= outcome.failed_records_bound
    assert read_all(kafka.bootstrap, dlq) == []
    assert checkpoints == outcome.end_cursors
    assert_every_fault_kind_struck(storm)
    assert [f for f in outcome.failures if not f.clear] == []
