"""The FC function end to end: trigger-shaped events → real SDK → emulator → projection → real Kafka broker."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import orjson
import pytest

from common.cursors import cursor_position
from common.errors import CursorExpiredError, EventError, SinkError, SourceError
from devstack.sls_emulator import EmulatorServer
from processor import handler as fc
from processor.delivery.at_least_once import MAX_IN_FLIGHT_PAGES
from tests.kafka_helpers import read_all
from tests.pipeline_support import (
    LESSON_LINES,
    chunks,
    driving_record,
    fc310_context,
    fc312_context,
    json_contents,
    kv_contents,
    put_groups,
    shard_events,
)
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET


@pytest.fixture
def function(kafka, topic_factory, tmp_path, function_env):
    """Configure the function like FC would (environment), return (topic, dlq_topic, reinitialize)."""
    topic, dlq = topic_factory(partitions=3), topic_factory()
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "KAFKA_TOPIC": topic, "KAFKA_DLQ_TOPIC": dlq,
           "CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "ALIBABA_CLOUD_ACCESS_KEY_ID": SLS_ACCESS_KEY_ID,
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SLS_ACCESS_KEY_SECRET, "INVOCATION_TIMEOUT_SECONDS": "60",
           "TIME_BUDGET_MARGIN_SECONDS": "2"}
    function_env.set(env)

    def reinitialize(**overrides: str) -> None:
        function_env.set(overrides)
        fc.initialize(None)

    return topic, dlq, reinitialize


def make_logstore(client, project, shards=1, name="driving"):
    client.create_logstore(project, name, ttl=1, shard_count=shards)
    return name


def values(records):
    return Counter(r.value for r in records)


def test_lesson_lines_arrive_as_projected_records_keyed_by_car_id(function, sls_client, sls_project, sls_proxy_env,
                                                                 kafka):
    topic, _, _ = function
    logstore = make_logstore(sls_client, sls_project)
    put_groups(sls_client, sls_project, logstore, [[{"content": line} for line in LESSON_LINES]])
    put_groups(sls_client, sls_project, logstore, [kv_contents(orjson.loads(line) for line in LESSON_LINES)])
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)

    summary = fc.handler(event, fc310_context(SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET))

    records = read_all(kafka.bootstrap, topic)
    assert sorted((r.key, r.value) for r in records) == [
        (b"1234", b'{"speed":12,"carID":1234}'), (b"1234", b'{"speed":12,"carID":1234}'),
        (b"3512", b'{"speed":24,"carID":3512}'), (b"3512", b'{"speed":24,"carID":3512}'),
    ]
    assert {r.headers["sls.project"] for r in records} == {sls_project.encode()}
    assert (summary["log_groups"], summary["records_read"], summary["produced"], summary["dead_lettered"]) == \
        (2, 4, 4, 0)
    assert summary["cursor_reached"] == orjson.loads(event)["source"]["endCursor"]
    orjson.dumps(summary)  # the summary must be JSON-serialisable as FC returns it


def test_four_shards_each_5000_records_arrive_exactly(function, sls_client, sls_project, sls_proxy_env, kafka):
    topic, _, _ = function
    logstore = make_logstore(sls_client, sls_project, shards=4)
    rng = random.Random(7)
    records = [driving_record(i, rng) for i in range(20_400)]
    put_groups(sls_client, sls_project, logstore, (json_contents(g) for g in chunks(records, 120)))
    events = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    assert len(events) == 4

    summaries = [fc.handler(ev, fc312_context()) for ev in events]

    expected = Counter(orjson.dumps({"speed": r["speed"], "carID": r["carID"]}) for r in records)
    got = read_all(kafka.bootstrap, topic)
    assert values(got) == expected
    assert sum(s["produced"] for s in summaries) == len(records)
    assert sum(s["records_read"] for s in summaries) == len(records)
    assert all(s["records_read"] >= 5000 for s in summaries)
    assert all(r.key == orjson.loads(r.value)["carID"].__str__().encode() for r in got)


POISON = [
    {"content": "{not json"},
    {"content": ""},
    {"content": "[1, 2]"},
    {"content": '{"speed": 12}'},
    {"content": '{"speed": "fast", "carID": 1}'},
    {"content": '{"speed": 12, "carID": 1.5}'},
    {"content": '{"speed": true, "carID": 1}'},
    {"content": '{"speed": 12, "carID": null}'},
    {"content": '{"speed": "' + "9" * 300_000 + 'x", "carID": 5}'},
    {"content": '{"speed": "NaN", "carID": 5}'},
    {"speed": "12"},
    {"content": '{"speed": 1, "carID": {"vin": "x"}}'},
]


def test_poison_records_go_to_the_dlq_with_reasons_and_the_rest_arrives(function, sls_client, sls_project,
                                                                        sls_proxy_env, kafka):
    topic, dlq, _ = function
    logstore = make_logstore(sls_client, sls_project)
    good = [{"content": LESSON_LINES[i % 2]} for i in range(len(POISON) + 1)]
    mixed = [item for pair in zip(good, [*POISON, None], strict=True) for item in pair if item is not None]
    put_groups(sls_client, sls_project, logstore, [mixed])
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)

    summary = fc.handler(event, fc312_context())

    assert len(read_all(kafka.bootstrap, topic)) == len(good)
    dead = [orjson.loads(r.value) for r in read_all(kafka.bootstrap, dlq)]
    assert len(dead) == len(POISON) == summary["dead_lettered"]
    reasons = [d["reason"] for d in dead]
    for needle in ("not valid JSON", "is empty", "expected an object", "'carID' is missing", "'speed' is 'fast'",
                   "'carID' is 1.5", "a boolean", "'carID' is null", "expected a number", "expected an int"):
        assert any(needle in r for r in reasons), needle
    assert all(d["source"]["project"] == sls_project and d["source"]["shard"] == 0 for d in dead)
    assert all(d["source"]["cursor"] == orjson.loads(event)["source"]["beginCursor"] for d in dead)
    assert dead[0]["original"]["contents"] == [["content", "{not json"]]


def test_empty_range_succeeds_with_zero_counts(function, sls_client, sls_project, sls_proxy_env):
    logstore = make_logstore(sls_client, sls_project)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    summary = fc.handler(event, fc312_context())
    assert (summary["log_groups"], summary["records_read"], summary["produced"]) == (0, 0, 0)


def test_unknown_shard_and_malformed_event_fail_with_clear_errors(function, sls_client, sls_project, sls_proxy_env):
    logstore = make_logstore(sls_client, sls_project)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    doc = orjson.loads(event)
    doc["source"]["shardId"] = 42
    with pytest.raises(SourceError, match=r"ShardNotExist.*shard 42"):
        fc.handler(orjson.dumps(doc), fc312_context())
    with pytest.raises(EventError, match="'source' is missing"):
        fc.handler(b'{"parameter": {}}', fc312_context())


def test_trigger_parameter_overrides_topic(function, sls_client, sls_project, sls_proxy_env, kafka, topic_factory):
    other = topic_factory()
    logstore = make_logstore(sls_client, sls_project)
    put_groups(sls_client, sls_project, logstore, [[{"content": LESSON_LINES[0]}]])
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore, parameter={"topic": other})
    fc.handler(event, fc312_context())
    assert [r.value for r in read_all(kafka.bootstrap, other)] == [b'{"speed":12,"carID":1234}']


def test_retry_of_a_delivered_range_sends_nothing_again(function, sls_client, sls_project, sls_proxy_env, kafka):
    topic, _, _ = function
    logstore = make_logstore(sls_client, sls_project)
    put_groups(sls_client, sls_project, logstore, [json_contents([{"speed": 1, "carID": i}]) for i in range(30)])
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    fc.handler(event, fc312_context())
    again = fc.handler(event, fc312_context())
    assert again["already_delivered"] is True
    assert again["produced"] == 0
    assert len(read_all(kafka.bootstrap, topic)) == 30


def test_broker_down_mid_range_then_retry_resumes_from_checkpoint(function, sls_client, sls_project, sls_proxy_env,
                                                                  sls_faults, kafka, tmp_path):
    topic, _, reinitialize = function
    pull_count, group_records = 5, 50
    reinitialize(SLS_PULL_COUNT=str(pull_count), INVOCATION_TIMEOUT_SECONDS="12", TIME_BUDGET_MARGIN_SECONDS="1")
    logstore = make_logstore(sls_client, sls_project)
    rng = random.Random(3)
    records = [driving_record(i, rng) for i in range(6000)]
    put_groups(sls_client, sls_project, logstore, (json_contents(g) for g in chunks(records, group_records)))
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    sls_faults.delay(op="pull_logs", seconds=0.15, times=1000)
    failure: list[BaseException] = []

    def first_attempt() -> None:
        try:
            fc.handler(event, fc312_context(timeout=12))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=first_attempt)
    thread.start()
    begin = orjson.loads(event)["source"]["beginCursor"]

    def progressed() -> bool:
        # The shard's first invocation records its begin before reading: wait for a confirmed batch past it.
        return any(orjson.loads(p.read_bytes())["cursor"] != begin
                   for p in (tmp_path / "checkpoints").rglob("shard-0.json"))

    deadline = time.monotonic() + 30
    while not progressed():
        assert time.monotonic() < deadline, "no batch was checkpointed within 30 s"
        time.sleep(0.05)
    kafka.stop()
    thread.join(60)
    sls_faults.clear()
    kafka.start()
    assert not thread.is_alive(), "the invocation did not end within 60 s of Kafka going down (budget: 12 s)"
    assert failure, "the invocation must fail while Kafka is down"
    assert isinstance(failure[0], (SinkError, TimeoutError)), failure[0]

    summary = fc.handler(event, fc312_context())

    assert summary["resumed_from_checkpoint"] is True
    got = values(read_all(kafka.bootstrap, topic))
    expected = Counter(orjson.dumps({"speed": r["speed"], "carID": r["carID"]}) for r in records)
    assert set(got) == set(expected)
    assert all(got[v] >= n for v, n in expected.items())
    # Nothing before the saved checkpoint is sent again: a value has extra copies only from records at or after it.
    resumed_at = (cursor_position(summary["start_cursor"]) - cursor_position(begin)) * group_records
    after_resume = Counter(orjson.dumps({"speed": r["speed"], "carID": r["carID"]}) for r in records[resumed_at:])
    assert all(got[v] - n <= after_resume[v] for v, n in expected.items())
    duplicates = sum(got.values()) - len(records)
    # And at most the pages in flight when Kafka went away: MAX_IN_FLIGHT_PAGES unconfirmed, plus the one being
    # produced, each of at most SLS_PULL_COUNT groups.
    assert 0 <= duplicates <= (MAX_IN_FLIGHT_PAGES + 1) * pull_count * group_records
    print(f"duplicates after broker outage: {duplicates} (resumed at record {resumed_at})")


def test_sls_faults_are_retried_and_the_data_arrives_complete(function, sls_client, sls_project, sls_proxy_env,
                                                              sls_faults, kafka):
    topic, _, reinitialize = function
    reinitialize(SLS_PULL_COUNT="10")
    logstore = make_logstore(sls_client, sls_project)
    put_groups(sls_client, sls_project, logstore, [json_contents([{"speed": 2, "carID": i}] * 3) for i in range(60)])
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    sls_faults.error(op="pull_logs", code="InternalServerError", times=2)
    sls_faults.error(op="pull_logs", code="ReadQuotaExceed", times=2)
    sls_faults.error(op="pull_logs", code="ShardReadQuotaExceed", times=2)
    sls_faults.drop(op="pull_logs", times=2)

    summary = fc.handler(event, fc312_context())

    assert len(read_all(kafka.bootstrap, topic)) == 180
    assert summary["produced"] == 180
    assert summary["sls_retries"] >= 4  # 403s and dropped connections; the SDK itself absorbs some 5xx
    assert sls_faults.pending() == []


def test_wrong_secret_fails_fast_with_401(function, sls_project, sls_client, sls_proxy_env, monkeypatch):
    logstore = make_logstore(sls_client, sls_project)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    with EmulatorServer(credentials={"checked-key": "right-secret"}) as strict:
        monkeypatch.setenv("HTTP_PROXY", strict.proxy_url)
        monkeypatch.setenv("http_proxy", strict.proxy_url)
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"SignatureNotMatch.*secret is wrong"):
            fc.handler(event, fc310_context("checked-key", "wrong-secret"))
        assert time.monotonic() - started < 5


def test_expired_cursor_follows_policy_and_reports_the_gap(function, sls_client, sls_project, sls_proxy_env,
                                                           sls_emulator, sls_clock, kafka):
    topic, _, reinitialize = function
    logstore = make_logstore(sls_client, sls_project)
    put_groups(sls_client, sls_project, logstore, [json_contents([{"speed": 1, "carID": i}]) for i in range(10)])
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    sls_clock.advance(100)
    put_groups(sls_client, sls_project, logstore, [json_contents([{"speed": 2, "carID": i}]) for i in range(5)])
    sls_emulator.store.set_ttl_seconds(sls_project, logstore, 50)
    doc = orjson.loads(event)
    doc["source"]["endCursor"] = sls_client.get_end_cursor(sls_project, logstore, 0).get_cursor()

    reinitialize(SLS_INVALID_CURSOR_POLICY="fail")
    with pytest.raises(CursorExpiredError, match="expired"):
        fc.handler(orjson.dumps(doc), fc312_context())

    reinitialize(SLS_INVALID_CURSOR_POLICY="begin")
    summary = fc.handler(orjson.dumps(doc), fc312_context())
    assert [g["log_groups"] for g in summary["gaps"]] == [10]
    assert summary["produced"] == 5
    assert sorted(orjson.loads(r.value)["speed"] for r in read_all(kafka.bootstrap, topic)) == [2] * 5


def _cursor_plus(cursor: str, n: int) -> str:
    import base64

    from common.cursors import cursor_position

    return base64.b64encode(str(cursor_position(cursor) + n).encode()).decode()


@pytest.mark.parametrize("store", ["sls", "file"])
def test_checkpoint_before_the_range_catches_up(function, sls_client, sls_project, sls_proxy_env, kafka, store):
    """A range the trigger gave up on leaves the checkpoint behind; the next run covers it, whatever the store:
    a checkpoint never jumps over a stretch that was not delivered."""
    topic, _, reinitialize = function
    reinitialize(CHECKPOINT_STORE=store)
    logstore = make_logstore(sls_client, sls_project)
    put_groups(sls_client, sls_project, logstore, [json_contents([{"speed": g, "carID": g}]) for g in range(20)])
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    doc = orjson.loads(event)
    begin = doc["source"]["beginCursor"]
    first = {**doc, "source": {**doc["source"], "endCursor": _cursor_plus(begin, 5)}}
    fc.handler(orjson.dumps(first), fc312_context())
    later = {**doc, "source": {**doc["source"], "beginCursor": _cursor_plus(begin, 10)}}
    summary = fc.handler(orjson.dumps(later), fc312_context())
    speeds = sorted(orjson.loads(r.value)["speed"] for r in read_all(kafka.bootstrap, topic))
    assert speeds == list(range(20))
    assert summary["resumed_from_checkpoint"] is True
