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
