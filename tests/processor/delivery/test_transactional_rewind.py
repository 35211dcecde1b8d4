"""The transactional commit strategy's rewind, over fakes of SLS and Kafka transactions (fast tier).

An abortable failure aborts, and the loop reads again from the last committed cursor: what a read_committed
consumer sees is every record once, and the summary counts only committed transactions. Attempts are bounded and
a fatal error is not retried.
"""

from __future__ import annotations

import orjson
import pytest

from checkpoints.base import Checkpoint
from common.errors import FatalSinkError, SinkError
from processor.delivery.transactional import MAX_ATTEMPTS, Transactional
from tests.processor.delivery.delivery_fakes import (
    CKPT_TOPIC,
    TOPIC,
    FakeShard,
    FakeTransactionalSink,
    TopicCheckpoints,
    cursor_at,
    log_group,
    projected,
    range_loop,
)

GROUPS, PER_GROUP = 12, 10


def shard() -> FakeShard:
    return FakeShard([log_group(g * PER_GROUP, PER_GROUP) for g in range(GROUPS)])


def run(sink: FakeTransactionalSink, max_records: int = 30):
    loop = range_loop(shard(), sink, pull_count=1)
    strategy = Transactional(loop, sink, TopicCheckpoints(sink), max_records)
    return loop, strategy


def committed_checkpoints(sink: FakeTransactionalSink) -> list[Checkpoint]:
    return [Checkpoint(d["cursor"], d["origin"]) for d in (orjson.loads(v) for v in sink.values(CKPT_TOPIC))]


def abortable() -> SinkError:
    return SinkError("transaction commit failed: broker went away")


@pytest.mark.parametrize("seed", range(3))
def test_an_aborted_transaction_is_read_again_and_counted_once(seed):
    # Commits: 1 = the origin record, 2 = records 0-29, 3 (fails) = records 30-59, re-read and committed again.
    sink = FakeTransactionalSink(seed=seed)
    loop, strategy = run(sink)
    original_commit = sink.commit

    def commit(deadline):
        if sink.commits == 2:
            sink.commit_failures.append(abortable())
        original_commit(deadline)

    sink.commit = commit

    summary = loop.execute(strategy)

    assert sorted(sink.values(TOPIC)) == sorted(projected(i) for i in range(GROUPS * PER_GROUP))
    assert (summary.records_read, summary.produced, summary.log_groups, summary.batches) == (120, 120, 12, 12)
    assert summary.aborted_transactions == 1
    assert committed_checkpoints(sink)[-1] == Checkpoint(cursor_at(GROUPS), cursor_at(0))
    assert [cp.cursor for cp in committed_checkpoints(sink)] == [cursor_at(n) for n in (0, 3, 6, 9, 12)]


def test_attempts_from_one_cursor_are_bounded():
    sink = FakeTransactionalSink(commit_failures=[None] + [abortable() for _ in range(50)])
    loop, strategy = run(sink)

    with pytest.raises(SinkError, match="broker went away"):
        loop.execute(strategy)

    # The origin's commit, then MAX_ATTEMPTS transactions from cursor 0, none committed.
    assert sink.commits == 1 + MAX_ATTEMPTS
    assert loop.run.stats.aborted_transactions == MAX_ATTEMPTS - 1
    assert not sink.values(TOPIC)
    assert committed_checkpoints(sink) == [Checkpoint(cursor_at(0), cursor_at(0))]
    assert loop.summary.records_read == 0


def test_a_fatal_error_is_not_retried():
    sink = FakeTransactionalSink(commit_failures=[None, FatalSinkError("fenced by a newer instance")])
    loop, strategy = run(sink)

    with pytest.raises(FatalSinkError, match="fenced"):
        loop.execute(strategy)

    assert (sink.commits, sink.aborts, loop.run.stats.aborted_transactions) == (2, 1, 0)
    assert not sink.values(TOPIC)
    assert loop.summary.records_read == 0


def test_a_warm_producer_resumes_from_its_own_last_commit_and_a_cold_one_from_the_topic():
    sink = FakeTransactionalSink()
    loop, strategy = run(sink)
    loop.execute(strategy)

    again, strategy = run(sink)
    summary = again.execute(strategy)
    assert summary.already_delivered

    cold = FakeTransactionalSink()
    cold.topics[CKPT_TOPIC] = list(sink.topics[CKPT_TOPIC][:2])  # origin and cursor 3 committed before
    loop, strategy = run(cold)
    summary = loop.execute(strategy)
    assert summary.start_cursor == cursor_at(3)
    assert summary.resumed_from_checkpoint
    assert sorted(cold.values(TOPIC)) == sorted(projected(i) for i in range(30, 120))
