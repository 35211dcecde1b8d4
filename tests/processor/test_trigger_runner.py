"""`sls-kafka run` / TriggerRunner against the emulator (real SDK) and the real broker."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import pytest

from checkpoints.base import CheckpointKey
from checkpoints.file import FileCheckpointStore
from common.errors import ConfigError
from processor.credentials import Credentials
from processor.delivery.at_least_once import MAX_IN_FLIGHT_PAGES
from processor.event import TriggerEvent
from processor.invocation_retry import invocation_retrying
from processor.runtime import Runtime
from processor.sls.shards import BEGIN, Position
from processor.trigger_runner import STARTED_SCOPE, TRIGGER_SCOPE, TriggerConfig, TriggerRunner
from tests.processor.commands_support import checkpoint_files, make_stack, stack_fixture  # noqa: F401  (`stack`)
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET
from tests.waiting import wait_for

CREDS = Credentials(SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET)


def runner_for(stack, stop=None, **config):
    runtime = Runtime.from_env(stack.variables)
    settings = {"interval": 0.2, "max_retry": 1, **config}
    return TriggerRunner(runtime, TriggerConfig(stack.endpoint, stack.project, stack.logstore, **settings), CREDS, stop)


def report(delivered: Counter, written: list[bytes]) -> str:
    expected = Counter(written)
    lost = sum((expected - delivered).values())
    dupes = sum((delivered - expected).values())
    return f"{lost} lost, {dupes} duplicated of {len(written)}"


# ------------------------------------------------------------------------------------------ retry policy


class Boom(Exception):
    pass


def test_invocation_retrying_max_retry_then_reraises_with_growing_backoff():
    sleeps: list[float] = []
    calls = []

    def fail():
        calls.append(1)
        raise Boom

    retrying = invocation_retrying(3, threading.Event(), sleeps.append, "shard 0")
    with pytest.raises(Boom):
        retrying(fail)
    assert len(calls) == 4
    assert len(sleeps) == 3
    assert sleeps[0] <= 2.0 < sleeps[2] <= 5.0


def test_invocation_retrying_config_error_not_retried():
    sleeps: list[float] = []
    retrying = invocation_retrying(5, threading.Event(), sleeps.append, "shard 0")
    with pytest.raises(ConfigError):
        retrying(lambda: (_ for _ in ()).throw(ConfigError("bad parameter")))
    assert sleeps == []


def test_invocation_retrying_stop_flag_cuts_retries_short():
    stop = threading.Event()
    calls = []

    def fail():
        calls.append(1)
        stop.set()
        raise Boom

    with pytest.raises(Boom):
        invocation_retrying(100, stop, lambda _s: None, "shard 0")(fail)
    assert len(calls) == 1


# ------------------------------------------------------------------------------------------- in-process


def test_run_writer_appending_everything_written_before_stop_arrives_once(stack):
    stack.write(500)
    stop = threading.Event()
    runner = runner_for(stack, stop, start=BEGIN)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        for _ in range(30):
            stack.write(200, per_group=20)
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    assert runner.rounds >= 2
    # Caught up: one more round takes everything written before the stop.
    stats = runner_for(stack).run(iterations=1)
    assert stats[0].failed == 0
    delivered = stack.delivered()
    assert delivered == Counter(stack.written), report(delivered, stack.written)


def test_run_default_start_end_skips_existing_data_then_delivers_new(stack):
    old = stack.write(300)
    runner = runner_for(stack)
    assert runner.run(iterations=1)[0].invocations == 0
    new = stack.write(300)
    stats = runner.run(iterations=2)
    assert sum(s.records for s in stats) == 300
    delivered = stack.delivered()
    assert delivered == Counter(new)
    assert not set(old) & set(delivered)


def test_run_start_time_begins_at_the_first_group_received_then(stack, sls_clock):
    stack.write(100)
    sls_clock.advance(100)
    later = stack.write(100)
    runner = runner_for(stack, start=Position("time", int(sls_clock.now), "now"))
    runner.run(iterations=1)
    assert stack.delivered() == Counter(later)


def test_run_split_children_picked_up_and_readonly_parent_drained(stack, caplog):
    runner = runner_for(stack, start=BEGIN)
    stack.write(400)
    runner.run(iterations=1)
    stack.client.split_shard(stack.project, stack.logstore, 0, "40000000000000000000000000000000")
    stack.write(600)
    with caplog.at_level("INFO", logger="processor.trigger_runner"):
        runner.run(iterations=2)
    assert "shard 0 is readonly and drained; no longer polled" in caplog.text
    shards = {int(s["shardID"]) for s in stack.client.list_shards(stack.project, stack.logstore).get_shards_info()}
    assert shards == {0, 1, 2, 3}
    delivered = stack.delivered()
    assert delivered == Counter(stack.written), report(delivered, stack.written)


def test_run_lagging_shard_caught_up_in_interval_sized_events(stack, sls_clock):
    for _ in range(5):
        stack.write(100, per_group=10)
        sls_clock.advance(3)
    runner = runner_for(stack, start=BEGIN, interval=3)
    stats = runner.run(iterations=1)
    # 5 writes 3 s apart on each of 2 shards: one event per write and shard, not one per shard.
    assert stats[0].invocations == 10
    assert stack.delivered() == Counter(stack.written)


# ------------------------------------------------------------------- expired progress, the run marker


@pytest.fixture
def one_shard(sls_client, sls_proxy_env, sls_project, kafka, topic_factory, tmp_path):
    return make_stack(sls_client, sls_proxy_env, sls_project, kafka.bootstrap, topic_factory(partitions=3),
                      topic_factory(), tmp_path / "checkpoints", shards=1)


def expire_progress(stack, sls_clock, sls_emulator, lost_groups: int = 4) -> list[bytes]:
    """Deliver 200 records, then write `lost_groups` groups and let retention remove all of it; returns the 200."""
    runner = runner_for(stack, start=BEGIN)
    first = stack.write(200)
    runner.run(iterations=1)
    stack.write(lost_groups * 50)
    sls_clock.advance(100)
    sls_emulator.store.set_ttl_seconds(stack.project, stack.logstore, 50)
    return first


def test_run_expired_progress_policy_end_skips_to_the_newest_data_and_reports_it(one_shard, sls_clock,
                                                                                  sls_emulator, caplog):
    first = expire_progress(one_shard, sls_clock, sls_emulator)
    skipped = one_shard.write(300)
    one_shard.extra["SLS_INVALID_CURSOR_POLICY"] = "end"
    with caplog.at_level("INFO"):
        [stats] = runner_for(one_shard).run(iterations=1)
    # The 4 expired groups and the 6 kept ones up to the end: the newest data from here on.
    assert (stats.failed, stats.gaps, stats.gap_log_groups, stats.records) == (0, 1, 10, 0)
    assert "DATA GAP" in caplog.text
    later = one_shard.write(100)
    runner_for(one_shard).run(iterations=1)
    assert one_shard.delivered() == Counter(first + later)
    assert not set(skipped) & set(one_shard.delivered())


def test_run_expired_progress_policy_fail_fails_the_shard_naming_the_policy_without_retrying(one_shard, sls_clock,
                                                                                            sls_emulator, caplog):
    expire_progress(one_shard, sls_clock, sls_emulator)
    kept = one_shard.write(100)
    one_shard.extra["SLS_INVALID_CURSOR_POLICY"] = "fail"
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="processor.trigger_runner"):
        [stats] = runner_for(one_shard, max_retry=3).run(iterations=1)
    assert (stats.failed, stats.invocations) == (1, 0)
    assert time.monotonic() - started < 5  # the same event fails the same way: not retried with backoff
    assert "SLS_INVALID_CURSOR_POLICY=fail stops here" in caplog.text
    assert "invocation failed (attempt" not in caplog.text
    # Set to 'begin', the next run reports the gap and delivers what is kept.
    one_shard.extra["SLS_INVALID_CURSOR_POLICY"] = "begin"
    [stats] = runner_for(one_shard).run(iterations=1)
    assert (stats.failed, stats.gaps, stats.gap_log_groups, stats.records) == (0, 1, 4, 100)
    assert set(kept) <= set(one_shard.delivered())


def test_run_expired_progress_with_nothing_kept_and_nothing_new_ends_the_gap_at_the_end(one_shard, sls_clock,
                                                                                        sls_emulator):
    first = expire_progress(one_shard, sls_clock, sls_emulator)
    runner = runner_for(one_shard)
    [stats] = runner.run(iterations=1)
    assert (stats.failed, stats.gaps, stats.gap_log_groups) == (0, 1, 4)
    # Progress is at the end now: the next round has nothing to do and no gap to report.
    [stats] = runner.run(iterations=1)
    assert (stats.invocations, stats.gaps) == (0, 0)
    assert one_shard.delivered() == Counter(first)


def test_run_expired_progress_behind_the_processors_checkpoint_reports_no_gap(one_shard, sls_clock, sls_emulator):
    runner = runner_for(one_shard, start=BEGIN)
    first = one_shard.write(200)
    runner.run(iterations=1)
    progress = runner.store.load(CheckpointKey(one_shard.project, one_shard.logstore, 0, TRIGGER_SCOPE)).cursor
    # The processor delivers more than the runner recorded (as when the runner stops before saving progress).
    second = one_shard.write(200)
    _, end = one_shard.cursors(0)
    event = TriggerEvent(one_shard.endpoint, one_shard.project, one_shard.logstore, 0, progress, end, {}, "job", "t")
    runtime = Runtime.from_env(one_shard.variables)
    try:
        runtime.process(event, CREDS)
    finally:
        runtime.close()
    sls_clock.advance(100)
    third = one_shard.write(200)
    sls_emulator.store.set_ttl_seconds(one_shard.project, one_shard.logstore, 50)
    [stats] = runner_for(one_shard).run(iterations=1)
    # What retention took was delivered: no gap, and the run goes on from the processor's checkpoint.
    assert (stats.failed, stats.gaps, stats.records) == (0, 0, 200)
    assert one_shard.delivered() == Counter(first + second + third)


def test_run_marker_recorded_on_the_first_run_and_progress_from_before_it_counts_as_a_run(stack):
    store = FileCheckpointStore(stack.checkpoints)
    marker = CheckpointKey(stack.project, stack.logstore, 0, STARTED_SCOPE)
    runner_for(stack).run(iterations=1)
    assert store.load(marker) is not None
    # A runner from before the marker left progress on shard 0 only: shard 1 is new, read from its beginning.
    store.path(marker).unlink()
    store.path(CheckpointKey(stack.project, stack.logstore, 1, TRIGGER_SCOPE)).unlink()
    written = stack.write(400)
    [stats] = runner_for(stack).run(iterations=1)
    assert stats.records == 400
    assert store.load(marker) is not None
    assert stack.delivered() == Counter(written)


# ------------------------------------------------------------------------------------- as a subprocess


def preload_and_start(stack, records=60_000):
    stack.write(records, per_group=50)
    proc = stack.popen("run", "--start", "begin", "--interval", "3")
    # The processor's own checkpoint appears once Kafka confirmed the first batch: an invocation is in flight.
    wait_for(lambda: any(checkpoint_files(stack, "_trigger")), 60, "the first confirmed batch")
    return proc


def keep_writing(stack, stop: threading.Event) -> threading.Thread:
    def write():
        while not stop.is_set():
            stack.write(100, per_group=10)
            time.sleep(0.02)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_run_sigterm_mid_invocation_finishes_it_and_restart_loses_nothing(stack):
    proc = preload_and_start(stack)
    writing = threading.Event()
    writer = keep_writing(stack, writing)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    writing.set()
    writer.join()
    assert proc.returncode == 0, err
    assert "SIGTERM received: finishing the invocation in flight, then stopping" in err
    restart = stack.cli("run", "--once")
    assert restart.returncode == 0, restart.stderr
    assert "round 1:" in restart.stderr
    delivered = stack.delivered()
    assert delivered == Counter(stack.written), report(delivered, stack.written)


def test_run_second_signal_abandons_invocation_and_restart_loses_nothing(stack):
    pull_count = 10
    stack.extra["SLS_PULL_COUNT"] = str(pull_count)
    proc = preload_and_start(stack)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    restart = stack.cli("run", "--once")
    assert restart.returncode == 0, restart.stderr
    delivered = stack.delivered()
    assert set(delivered) == set(stack.written), report(delivered, stack.written)
    # At most the batches in flight when it was abandoned are sent again.
    dupes = sum((delivered - Counter(stack.written)).values())
    assert dupes <= MAX_IN_FLIGHT_PAGES * pull_count * 50
