"""Bad data and configuration at the edges (issue 14, items 8 and 10), against the real broker and the emulator.

Item 8: a value that is not UTF-8 reaches the projection as `bytes` (upb does not check proto2 strings), so a
field projected as `any` used to crash every attempt. The SDK's `put_logs` cannot send such bytes (it encodes
through a `LogGroup`), so the page is written with the SDK's `put_log_raw` and a `LogGroupRaw`, lz4 on the wire.

Item 10: a misspelt field name dead-lettered every record and moved the checkpoint past them. The default
DEAD_LETTER_TOLERANCE=page stops at a page rejected entirely for one reason, before producing any of it.
"""

from __future__ import annotations

import base64

import orjson
import pytest
from aliyun.log.proto import LogGroupRaw

from common.cursors import cursor_position
from common.errors import ConfigError, DeadLetterToleranceError
from processor import handler as fc
from tests.faults.test_fault_matrix import MODES, Setup, one_shard
from tests.kafka_helpers import read_all
from tests.pipeline_support import fc312_context, json_contents, put_groups, shard_events


@pytest.fixture(params=MODES)
def setup(request, kafka, topic_factory, tmp_path, function_env):
    return Setup(request.param, kafka, topic_factory, tmp_path, function_env)


def put_raw(client, project: str, logstore: str, logs: list[dict[str, bytes]]) -> None:
    """One log group whose content values are bytes as given, sent through the SDK's put_log_raw (lz4)."""
    group = LogGroupRaw()
    group.Topic, group.Source = "driving", "10.0.0.7"
    for i, contents in enumerate(logs):
        log = group.Logs.add()
        log.Time = 1_700_000_000 + i
        for key, value in contents.items():
            c = log.Contents.add()
            c.Key, c.Value = key, value
    client.put_log_raw(project, logstore, group)


def topic_values(setup: Setup, topic: str) -> list[bytes]:
    """Everything written to `topic`, aborted transactions included (read_uncommitted)."""
    return [r.value for r in read_all(setup.kafka.bootstrap, topic, isolation="read_uncommitted")]


def dead_letters(setup: Setup) -> list[dict]:
    return [orjson.loads(r.value) for r in read_all(setup.kafka.bootstrap, setup.dlq)]


def test_non_utf8_value_of_an_any_field_is_dead_lettered_and_the_rest_delivered(setup, sls_client, sls_project,
                                                                                sls_proxy_env):
    setup.configure(PROJECTION_FIELDS="speed:number,carID:int,driver")
    logstore = one_shard(sls_client, sls_project)
    drivers = ["Ana", "José", "Zoë"]
    logs = [{"speed": str(i).encode(), "carID": str(100 + i).encode(), "driver": drivers[i % 3].encode()}
            for i in range(40)]
    logs.insert(17, {"speed": b"50", "carID": b"999", "driver": b"Jos\xe9"})
    put_raw(sls_client, sls_project, logstore, logs[:25])
    put_raw(sls_client, sls_project, logstore, logs[25:])
    setup.expected.update(orjson.dumps({"speed": i, "carID": 100 + i, "driver": drivers[i % 3]}) for i in range(40))
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)

    summary = fc.handler(event, fc312_context())

    assert (summary["produced"], summary["dead_lettered"]) == (40, 1)
    assert summary["cursor_reached"] == orjson.loads(event)["source"]["endCursor"]
    setup.check()
    [dead] = dead_letters(setup)
    assert dead["reason"] == "field 'driver' is not valid UTF-8 (unexpected end of data at byte 3)"
    assert dead["original"]["contents"][2] == ["driver", {"base64": base64.b64encode(b"Jos\xe9").decode()}]


def test_misspelt_field_fails_naming_it_and_nothing_moves(setup, sls_client, sls_project, sls_proxy_env):
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 600)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    setup.configure(PROJECTION_FIELDS="sped:number,carID:int")

    with pytest.raises(DeadLetterToleranceError) as failed:
        fc.handler(event, fc312_context())

    assert str(failed.value).startswith("every record lacks required field 'sped': check PROJECTION_FIELDS (all ")
    assert isinstance(failed.value, ConfigError)  # the trigger runner and backfill do not retry it
    assert topic_values(setup, setup.topic) == []
    assert topic_values(setup, setup.dlq) == []
    # The checkpoint did not pass a record: with the name fixed, the same event delivers the whole range.
    setup.configure(PROJECTION_FIELDS="speed:number,carID:int")
    summary = fc.handler(event, fc312_context())
    assert summary["start_cursor"] == orjson.loads(event)["source"]["beginCursor"]
    assert (summary["already_delivered"], summary["produced"], summary["dead_lettered"]) == (False, 600, 0)
    setup.check()


def test_json_format_on_key_value_logs_fails_naming_the_settings(setup, sls_client, sls_project, sls_proxy_env):
    logstore = one_shard(sls_client, sls_project)
    put_groups(sls_client, sls_project, logstore, [[{"speed": "5", "carID": str(i)} for i in range(30)]])
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    setup.configure(LOG_FORMAT="json")

    with pytest.raises(DeadLetterToleranceError, match="no record has the content field 'content': check LOG_FORMAT "
                                                       "and LOG_JSON_FIELD"):
        fc.handler(event, fc312_context())
    assert topic_values(setup, setup.dlq) == []


def test_bad_records_among_good_ones_and_small_or_mixed_bad_pages_are_dead_lettered(setup, sls_client, sls_project,
                                                                                   sls_proxy_env):
    setup.configure(SLS_PULL_COUNT="1")  # one log group per page
    logstore = one_shard(sls_client, sls_project)
    good = [{"speed": i % 90, "carID": i} for i in range(200)]
    missing = [{"speed": 1}, {"speed": 2}, {"speed": 3}]
    groups = [
        json_contents([*good[:50], missing[0], *good[50:100], missing[1], missing[2]]),
        json_contents([{"speed": 4}]),  # a page of one poison record: no pattern
        [{"content": "{not json"}, {"content": '{"speed": "fast", "carID": 1}'}],  # a page of two, two reasons
        json_contents(good[100:]),
    ]
    put_groups(sls_client, sls_project, logstore, groups)
    setup.expected.update(orjson.dumps(r) for r in good)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)

    summary = fc.handler(event, fc312_context())

    assert (summary["produced"], summary["dead_lettered"], summary["batches"]) == (200, 6, 4)
    setup.check()
    reasons = sorted(d["reason"] for d in dead_letters(setup))
    assert reasons == ["content field 'content' is not valid JSON: unexpected character, expected a string "
                       "key: line 1 column 2 (char 1)",
                       "field 'speed' is 'fast', expected a number", *["required field 'carID' is missing"] * 4]


def test_tolerance_all_dead_letters_a_whole_page_and_none_stops_at_one_record(setup, sls_client, sls_project,
                                                                             sls_proxy_env):
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 100)
    put_groups(sls_client, sls_project, logstore, [[{"content": "{not json"}]])  # 3 groups: one page
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)

    setup.configure(DEAD_LETTER_TOLERANCE="none")
    with pytest.raises(DeadLetterToleranceError, match=r"^1 record\(s\) of the page at cursor \S+ of shard 0 cannot "
                                                       "be projected, the first because content field 'content' is "
                                                       "not valid JSON"):
        fc.handler(event, fc312_context())
    assert topic_values(setup, setup.topic) == []
    assert topic_values(setup, setup.dlq) == []

    setup.configure(DEAD_LETTER_TOLERANCE="all", PROJECTION_FIELDS="sped:number,carID:int")
    summary = fc.handler(event, fc312_context())
    assert (summary["produced"], summary["dead_lettered"]) == (0, 101)
    assert summary["cursor_reached"] == orjson.loads(event)["source"]["endCursor"]


def test_tolerance_value_is_checked_at_start_up(monkeypatch, kafka):
    from processor.config import Settings

    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "KAFKA_TOPIC": "t", "DEAD_LETTER_TOLERANCE": "some"}
    with pytest.raises(ConfigError, match="DEAD_LETTER_TOLERANCE='some' is not one of page, none, all"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "DEAD_LETTER_TOLERANCE": "ALL"}).projection.dead_letter_tolerance == "all"


def test_refused_page_after_good_pages_is_never_passed_and_aborts_the_transaction(setup, sls_client, sls_project,
                                                                                  sls_proxy_env):
    setup.configure(SLS_PULL_COUNT="1")  # one log group per page
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 100)  # pages 0 and 1
    put_groups(sls_client, sls_project, logstore, [json_contents({"speed": i} for i in range(20))])  # page 2
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    begin = cursor_position(orjson.loads(event)["source"]["beginCursor"])

    with pytest.raises(DeadLetterToleranceError, match=r"^every record lacks required field 'carID'"):
        fc.handler(event, fc312_context())

    assert topic_values(setup, setup.dlq) == []
    if setup.mode == "exactly-once":
        # Pages 0 and 1 were in the same transaction as page 2: it aborted, so none of them is visible.
        assert read_all(setup.kafka.bootstrap, setup.topic) == []
    setup.configure(DEAD_LETTER_TOLERANCE="all")
    summary = fc.handler(event, fc312_context())
    # No checkpoint passed page 2 (exactly-once: none was committed at all).
    assert cursor_position(summary["start_cursor"]) <= begin + (0 if setup.mode == "exactly-once" else 2)
    assert summary["cursor_reached"] == orjson.loads(event)["source"]["endCursor"]
    assert [d["reason"] for d in dead_letters(setup)] == ["required field 'carID' is missing"] * 20
    setup.check()


def test_trigger_runner_stops_at_a_misspelt_field_without_retrying(setup, sls_client, sls_project, sls_proxy_env):
    from processor.credentials import Credentials
    from processor.runtime import Runtime
    from processor.sls.shards import BEGIN
    from processor.trigger_runner import TriggerConfig, TriggerRunner
    from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET

    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, 200)
    setup.configure(PROJECTION_FIELDS="sped:number,carID:int")
    runtime = Runtime.from_env()
    sleeps: list[float] = []
    runner = TriggerRunner(runtime, TriggerConfig(sls_proxy_env, sls_project, logstore, interval=1, max_retry=5,
                                                  start=BEGIN),
                           Credentials(SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET), sleep=sleeps.append)
    try:
        with pytest.raises(DeadLetterToleranceError, match="every record lacks required field 'sped'"):
            runner.run(iterations=3)
    finally:
        runtime.close(2)
    assert sleeps == []  # the same event fails the same way: no backoff, no retry
    assert topic_values(setup, setup.topic) == []
    assert topic_values(setup, setup.dlq) == []
