"""Loss scenario 7 (issue 13): a backfill job id reused with a different range, through the CLI, in both modes.

A job's checkpoints say how far each shard got *within the range the job was started with*. Read against another
range they make the events before that point look delivered: run 1 covers [c1, c2), run 2 with the same
`--job-id` asks for [c0, c3), and [c0, c1) was skipped while the summary said `complete`. A job id is bound to
its per-shard range: another range is refused before anything is read or produced, naming both ranges.
"""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from common.cursors import cursor_position
from processor.sls.shards import cursor_from_position
from tests.kafka_helpers import read_all
from tests.processor.commands_support import Stack, make_stack

GROUPS_PER_WRITE = 10  # each write: 1,000 records in 10 log groups of 100


@pytest.fixture(params=["at-least-once", "exactly-once"])
def stack(request, sls_client, sls_proxy_env, sls_project, kafka, topic_factory, tmp_path) -> Stack:
    """A one-shard logstore, so the scenario's cursors c0..c3 are plain `--from`/`--to` arguments."""
    s = make_stack(sls_client, sls_proxy_env, sls_project, kafka.bootstrap, topic_factory(partitions=3),
                   topic_factory(), tmp_path / "checkpoints", shards=1)
    s.extra["DELIVERY_MODE"] = request.param
    if request.param == "exactly-once":
        s.extra["KAFKA_CHECKPOINT_TOPIC"] = topic_factory(config={"cleanup.policy": "compact"})
    return s


def everything_written_to(stack: Stack) -> int:
    """Records in the topic, committed or not: what a refused run must leave unchanged."""
    return len(read_all(stack.bootstrap, stack.topic, isolation="read_uncommitted", timeout=60))


@pytest.mark.parametrize("groups_per_event", ["2000", "5"])
def test_scenario7_a_job_id_reused_with_a_wider_range_is_refused_naming_both_ranges(stack, groups_per_event):
    stack.write(1000, per_group=100)
    middle = stack.write(1000, per_group=100)
    stack.write(1000, per_group=100)
    c0, c3 = stack.cursors(0)
    c1, c2 = (cursor_from_position(cursor_position(c0) + n * GROUPS_PER_WRITE) for n in (1, 2))
    assert cursor_position(c3) - cursor_position(c0) == 3 * GROUPS_PER_WRITE
    job = ("backfill", "--job-id", "reused", "--shards", "0", "--groups-per-event", groups_per_event)

    first = stack.cli(*job, "--from", c1, "--to", c2)
    assert first.returncode == 0, first.stderr
    assert stack.delivered() == Counter(middle)
    written = everything_written_to(stack)

    wider = stack.cli(*job, "--from", c0, "--to", c3)

    assert wider.returncode == 2, f"a different range under the same job id must be refused:\n{wider.stdout}"
    assert not wider.stdout, "a refused job prints no summary"
    error = wider.stderr.strip().splitlines()[-1]
    assert "'reused'" in error
    assert f"shard 0: recorded [{c1}, {c2}), requested [{c0}, {c3})" in error, error
    assert everything_written_to(stack) == written, "the refused run produced records"

    same = stack.cli(*job, "--from", c1, "--to", c2, "--json")
    assert same.returncode == 0, same.stderr
    summary = orjson.loads(same.stdout)
    assert summary["complete"]
    assert summary["produced"] == 0
    assert [(s["events_skipped"], s["events_total"]) for s in summary["shards"]] == [
        (summary["shards"][0]["events_total"],) * 2]
    assert stack.delivered() == Counter(middle)


def test_scenario7_shared_store_a_job_started_on_another_machine_is_refused_when_its_range_is_unknown(
        stack, tmp_path, sls_faults):
    """Two machines share the job's checkpoints (`sls` store, or Kafka in exactly-once) but not their manifests.

    With the `sls` store a complete job gives its consumer group back (SLS allows 30 per logstore), and its
    checkpoints with it; so there the first machine's run is left unfinished, as when a second machine joins.
    """
    unfinished = stack.extra["DELIVERY_MODE"] == "at-least-once"
    if unfinished:
        stack.extra.update(CHECKPOINT_STORE="sls", INVOCATION_TIMEOUT_SECONDS="4", TIME_BUDGET_MARGIN_SECONDS="1")
    stack.write(1000, per_group=100)
    middle = stack.write(1000, per_group=100)
    c0, c3 = stack.cursors(0)
    c1 = cursor_from_position(cursor_position(c0) + GROUPS_PER_WRITE)
    job = ("backfill", "--job-id", "shared", "--shards", "0", "--max-retry", "0")

    if unfinished:
        sls_faults.delay(op="pull_logs", seconds=10, times=1000)
    first = stack.cli(*job, "--from", c1, "--to", c3)
    sls_faults.clear()
    if unfinished:
        assert first.returncode != 0, "the first machine's run must end unfinished"
    else:
        assert first.returncode == 0, first.stderr
        assert stack.delivered() == Counter(middle)
    written = everything_written_to(stack)

    stack.checkpoints = tmp_path / "another-machine"
    wider = stack.cli(*job, "--from", c0, "--to", c3)

    assert wider.returncode == 2, f"a job whose range is unknown here must be refused:\n{wider.stdout}"
    error = wider.stderr.strip().splitlines()[-1]
    assert "'shared' already has checkpoints (shard(s) 0" in error, error
    assert everything_written_to(stack) == written, "the refused run produced records"
