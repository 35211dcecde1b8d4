"""Fault-matrix rows 14-15: `sls-kafka run` (the local trigger runner) restarted after retention moved on.

Each row runs the real command as a subprocess, against the emulator (its clock and TTL moved by the test) and
the real broker, in both delivery modes; at-least-once also with the runner's progress in an SLS consumer group.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from devstack.sls_emulator import EmulatorServer
from tests.processor.commands_support import Stack, make_stack
from tests.sls_fixtures import ManualClock

MIDDLE_KEY = "8" + "0" * 31
PER_GROUP = 50
# (delivery mode, checkpoint store): exactly-once keeps the runner's progress in files, its own in Kafka.
MODES = [("at-least-once", "file"), ("at-least-once", "sls"), ("exactly-once", "kafka")]


@pytest.fixture(params=MODES, ids=["at-least-once", "at-least-once-sls", "exactly-once"])
def stack(request, sls_client, sls_proxy_env, sls_project, kafka, topic_factory, tmp_path) -> Stack:
    mode, store = request.param
    s = make_stack(sls_client, sls_proxy_env, sls_project, kafka.bootstrap, topic_factory(partitions=3),
                   topic_factory(), tmp_path / "checkpoints", shards=1)
    s.extra.update(DELIVERY_MODE=mode, CHECKPOINT_STORE=store)
    if mode == "exactly-once":
        s.extra.update(KAFKA_CHECKPOINT_TOPIC=topic_factory(config={"cleanup.policy": "compact"}),
                       KAFKA_TRANSACTION_TIMEOUT_MS="10000")
    return s


def run_once(stack: Stack, *args: str) -> str:
    """`sls-kafka run --once`; returns its log (stderr) after checking it exited 0."""
    done = stack.cli("run", "--once", "--interval", "3", *args)
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr}"
    return done.stderr


def test_row14_runner_progress_expired_gap_reported_and_the_runner_goes_on(stack, sls_clock: ManualClock,
                                                                          sls_emulator: EmulatorServer):
    """The runner's saved cursor points into data retention removed: the gap is reported, the rest delivered."""
    first = stack.write(10 * PER_GROUP)
    run_once(stack, "--start", "begin")
    # While the runner is down: 10 groups are written, then retention removes them before it comes back.
    stack.write(10 * PER_GROUP)
    sls_clock.advance(100)
    kept = stack.write(20 * PER_GROUP)
    sls_emulator.store.set_ttl_seconds(stack.project, stack.logstore, 50)

    log = run_once(stack)

    gap = re.search(r"DATA GAP in \S+ shard 0: (\d+) log group\(s\) in \[(\S+), (\S+)\) could not be read", log)
    assert gap, log
    assert int(gap[1]) == 10
    assert gap[3] == stack.cursors(0)[0]  # up to the oldest data kept
    assert re.search(r"round 1: .* 1 gap\(s\) \(10 log group\(s\) lost\)", log), log
    # It goes on: what is written next is delivered by the next run.
    later = stack.write(5 * PER_GROUP)
    run_once(stack)
    delivered = stack.delivered()
    assert delivered == Counter(first + kept + later)


def test_row15_runner_down_across_a_split_whose_parent_retired_children_from_their_beginning(
        stack, sls_clock: ManualClock, sls_emulator: EmulatorServer):
    """`--start end` applies to the first run on a logstore only, not to children found after a restart."""
    run_once(stack)  # the first run: --start end on an empty logstore
    parent = stack.write(20 * PER_GROUP)
    run_once(stack)
    # Down while the shard splits, the children take 2,000 records and the parent's data expires.
    sls_clock.advance(100)
    stack.client.split_shard(stack.project, stack.logstore, 0, MIDDLE_KEY)
    children = stack.write(40 * PER_GROUP)
    sls_emulator.store.set_ttl_seconds(stack.project, stack.logstore, 50)
    listed = {int(s["shardID"]) for s in stack.client.list_shards(stack.project, stack.logstore).get_shards_info()}
    assert listed == {1, 2}, "the retired parent must have left ListShards"

    run_once(stack)

    delivered = stack.delivered()
    assert delivered == Counter(parent + children), f"{sum((Counter(children) - delivered).values())} skipped"
