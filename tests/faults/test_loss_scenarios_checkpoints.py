"""Fault-matrix rows 11-13: sequences of invocations that used to lose, skip or re-send records.

Each runs several trigger-shaped ranges of one shard in the order the trigger can produce them (a range
fails, the next succeeds, the first is retried; instances overlap) against the real broker and the emulator.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import orjson
import pytest

from checkpoints.base import CheckpointKey
from common.cursors import cursor_position
from common.errors import ProcessorError
from processor import handler as fc
from processor.credentials import Credentials
from processor.event import TriggerEvent
from processor.projection import Projector
from processor.runtime import Runtime
from processor.sls.shards import cursor_from_position
from tests.faults.test_fault_matrix import MODES, Setup, invoke_until_done, one_shard
from tests.pipeline_support import fc312_context, shard_events
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET

GROUPS = 40
PER_GROUP = 50


@pytest.fixture(params=MODES)
def setup(request, kafka, topic_factory, tmp_path, function_env):
    return Setup(request.param, kafka, topic_factory, tmp_path, function_env)


def sub_ranges(event: bytes, *cuts: int) -> list[bytes]:
    """The shard's event cut at group offsets `cuts` into consecutive ranges, as successive trigger intervals."""
    doc = orjson.loads(event)
    first = cursor_position(doc["source"]["beginCursor"])
    cursors = [doc["source"]["beginCursor"], *(cursor_from_position(first + c) for c in cuts),
               doc["source"]["endCursor"]]
    return [orjson.dumps({**doc, "source": {**doc["source"], "beginCursor": b, "endCursor": e}})
            for b, e in itertools.pairwise(cursors)]


def written(setup: Setup, sls_client, sls_project: str, sls_proxy_env: str, groups: int = GROUPS) -> bytes:
    logstore = one_shard(sls_client, sls_project)
    setup.write(sls_client, sls_project, logstore, groups * PER_GROUP, per_group=PER_GROUP)
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, logstore)
    return event


def test_row11_first_range_fails_unconfirmed_then_next_succeeds(setup, sls_client, sls_project, sls_proxy_env,
                                                                sls_faults):
    """Range A fails before anything is confirmed, B succeeds, A is retried: A's records still arrive."""
    if setup.mode == "at-least-once":
        setup.configure(CHECKPOINT_STORE="sls")
    event = written(setup, sls_client, sls_project, sls_proxy_env)
    range_a, range_b = sub_ranges(event, GROUPS // 2)
    sls_faults.error(op="pull_logs", code="ShardReadQuotaExceed", times=100_000)
    with pytest.raises(TimeoutError, match="time budget"):
        fc.handler(range_a, fc312_context(timeout=4))
    sls_faults.clear()

    summary_b = fc.handler(range_b, fc312_context())
    summary_a, _ = invoke_until_done(range_a)

    # B finds A's stretch behind it and delivers it; A's retry then has nothing left to do.
    assert summary_b["start_cursor"] == orjson.loads(range_a)["source"]["beginCursor"]
    assert summary_b["records_read"] == GROUPS * PER_GROUP
    assert summary_a["already_delivered"] is True
    setup.check()


def test_row12_range_fails_part_way_next_succeeds_retry_not_skipped(setup, sls_client, sls_project, sls_proxy_env,
                                                                    sls_faults, tmp_path):
    """A saves progress part-way and fails, B succeeds, A is retried (file store; Kafka store exactly-once)."""
    setup.configure(SLS_PULL_COUNT="2")
    event = written(setup, sls_client, sls_project, sls_proxy_env)
    range_a, range_b = sub_ranges(event, GROUPS // 2)
    begin_a = orjson.loads(range_a)["source"]["beginCursor"]
    sls_faults.delay(op="pull_logs", seconds=0.3, times=100_000)
    with pytest.raises(TimeoutError, match="time budget"):
        fc.handler(range_a, fc312_context(timeout=3))
    sls_faults.clear()

    summary_b = fc.handler(range_b, fc312_context())
    summary_a, _ = invoke_until_done(range_a)

    # A's progress lay inside A: B starts there, so no checkpoint ever jumps over A's undelivered rest.
    reached = cursor_position(summary_b["start_cursor"])
    assert cursor_position(begin_a) < reached < cursor_position(orjson.loads(range_b)["source"]["beginCursor"])
    assert summary_a["already_delivered"] is True
    duplicates = setup.check()
    assert duplicates == 0, "B starts where A's confirmed progress ends: nothing is sent twice"


class SlowProjector(Projector):
    """The projection of an instance that is slow (a busy host): each log group takes `seconds`."""

    seconds = 0.15

    def project_group(self, group: Any) -> Any:
        time.sleep(self.seconds)
        return super().project_group(group)


@pytest.mark.parametrize("store", ["sls", "file"])
def test_row13_slow_instance_never_moves_a_shared_checkpoint_back(store, kafka, topic_factory, tmp_path,
                                                                  monkeypatch, function_env, sls_client,
                                                                  sls_project, sls_proxy_env):
    """A is slow on one instance; B on another catches up past it; A's later saves must not pull it back."""
    setup = Setup("at-least-once", kafka, topic_factory, tmp_path, function_env)
    setup.configure(CHECKPOINT_STORE=store, SLS_PULL_COUNT="1")
    event = written(setup, sls_client, sls_project, sls_proxy_env, groups=60)
    range_a, range_b, range_c = (TriggerEvent.from_json(e) for e in sub_ranges(event, 20, 40))
    creds = Credentials(SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET)
    slow, fast = Runtime.from_env(), Runtime.from_env()
    slow_projector = SlowProjector(slow.settings.projection)
    monkeypatch.setattr(slow, "projector", lambda _settings: slow_projector)
    outcome: list[Any] = []

    def run_a() -> None:
        try:
            outcome.append(slow.process(range_a, creds, 60))
        except ProcessorError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run_a)
    try:
        thread.start()
        key_store = fast.checkpoint_store(fast.sls_client(range_a.endpoint, creds))
        key = CheckpointKey(range_a.project, range_a.logstore, range_a.shard)
        first = cursor_position(range_a.begin_cursor)
        deadline = time.monotonic() + 30
        while (saved := key_store.load(key)) is None or cursor_position(saved.cursor) < first + 3:
            assert time.monotonic() < deadline, "the slow instance saved no progress"
            time.sleep(0.05)
        summary_b = fast.process(range_b, creds, 60)
        assert summary_b.resumed_from_checkpoint
        thread.join(60)
        assert not isinstance(outcome[0], BaseException), outcome[0]
        after_a = key_store.load(key)
        assert after_a is not None
        assert after_a.cursor == range_b.end_cursor, "the slow instance moved the checkpoint back"

        summary_c = fast.process(range_c, creds, 60)
    finally:
        thread.join(60)
        slow.close(2)
        fast.close(2)

    assert summary_c.start_cursor == range_c.begin_cursor
    assert summary_c.records_read == 20 * PER_GROUP
    duplicates = setup.check()
    # Only what A and B both read (A's stretch after the checkpoint B started from) is there twice.
    overlap = cursor_position(range_b.begin_cursor) - cursor_position(summary_b.start_cursor)
    assert duplicates == overlap * PER_GROUP
