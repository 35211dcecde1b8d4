"""`sls-kafka invoke --event FILE` with a real trigger event: the summary is printed, the records are in Kafka."""

from __future__ import annotations

from collections import Counter

import orjson

from common.cursors import cursor_position
from tests.pipeline_support import shard_events
from tests.processor.commands_support import stack_fixture  # noqa: F401  (the `stack` fixture)


def test_invoke_event_file_prints_summary_and_delivers_the_range(stack, tmp_path):
    stack.write(2000, per_group=40)
    events = shard_events(stack.client, stack.endpoint, stack.project, stack.logstore)
    paths = []
    for i, raw in enumerate(events):
        paths.append(tmp_path / f"event-{i}.json")
        paths[-1].write_bytes(raw)
    summaries = []
    for path in paths:
        result = stack.cli("invoke", "--event", str(path))
        assert result.returncode == 0, result.stderr
        summaries.append(orjson.loads(result.stdout))
    assert sum(s["produced"] for s in summaries) == 2000
    for raw, summary in zip(events, summaries, strict=True):
        source = orjson.loads(raw)["source"]
        assert (summary["shard"], summary["cursor_reached"]) == (source["shardId"], source["endCursor"])
        assert summary["log_groups"] == cursor_position(source["endCursor"]) - cursor_position(source["beginCursor"])
    assert stack.delivered() == Counter(stack.written)


def test_invoke_event_from_stdin_again_is_already_delivered(stack):
    stack.write(500)
    raw = shard_events(stack.client, stack.endpoint, stack.project, stack.logstore)[0]
    first = stack.cli("invoke", "--event", "-", stdin=raw.decode())
    again = stack.cli("invoke", "--event", "-", stdin=raw.decode())
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert orjson.loads(first.stdout)["produced"] == 250
    assert orjson.loads(again.stdout)["already_delivered"] is True
    assert sum(stack.delivered().values()) == 250


def test_event_command_prints_the_shards_current_range_ready_for_invoke(stack):
    stack.write(500)
    printed = stack.cli("event", "--shard", "1", "--parameter", orjson.dumps({"topic": stack.topic}).decode())
    assert printed.returncode == 0, printed.stderr
    event = orjson.loads(printed.stdout)
    begin, end = stack.cursors(1)
    assert event["source"] == {"endpoint": stack.endpoint, "projectName": stack.project,
                               "logstoreName": stack.logstore, "shardId": 1, "beginCursor": begin, "endCursor": end}
    assert event["parameter"] == {"topic": stack.topic}
    invoked = stack.cli("invoke", "--event", "-", stdin=printed.stdout)
    assert invoked.returncode == 0, invoked.stderr
    assert orjson.loads(invoked.stdout)["produced"] == 250
    unknown = stack.cli("event", "--shard", "7")
    assert unknown.returncode == 2
    assert "sls-kafka event: error: --shard 7: the logstore has shards 0, 1" in unknown.stderr


def test_scratch_invoke_runs_a_delivered_range_again_under_a_throwaway_checkpoint(stack):
    stack.write(500)
    raw = shard_events(stack.client, stack.endpoint, stack.project, stack.logstore)[0].decode()
    assert orjson.loads(stack.cli("invoke", "--event", "-", stdin=raw).stdout)["produced"] == 250
    scratch = stack.cli("invoke", "--event", "-", "--scratch", stdin=raw)
    assert scratch.returncode == 0, scratch.stderr
    summary = orjson.loads(scratch.stdout)
    assert summary["produced"] == 250
    assert summary["already_delivered"] is False
    assert summary["checkpoint_scope"].startswith("invoke-")
    scopes = {p.name for p in (stack.checkpoints / stack.project / stack.logstore).iterdir()}
    assert scopes == {"_trigger"}
    again = stack.cli("invoke", "--event", "-", stdin=raw)
    assert orjson.loads(again.stdout)["already_delivered"] is True
    assert sum(stack.delivered().values()) == 500
