"""`sls-kafka backfill` against the emulator (real SDK) and the real broker: ranges, resume, dry run, readonly."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from datetime import datetime, timezone

import orjson
import pytest

from common.cursors import cursor_position
from common.errors import ConfigError
from processor.backfill.jobs import JobManifest, JobManifests, JobRequest, bind_job
from processor.backfill.runs import (
    BackfillJob,
    LocalInvoker,
    ShardRange,
    run_shard,
)
from processor.credentials import Credentials
from processor.delivery.at_least_once import MAX_IN_FLIGHT_PAGES
from processor.runtime import Runtime
from processor.sls.shards import Position, cursor_from_position
from tests.kafka_helpers import read_all
from tests.pipeline_support import put_groups
from tests.processor.commands_support import checkpoint_files, stack_fixture, stop  # noqa: F401  (the `stack` fixture)
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET, pull_range
from tests.waiting import wait_for

CREDS = Credentials(SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET)


def summary_of(result) -> dict:
    return orjson.loads(result.stdout)


def values_in(stack, shard: int, begin: str, end: str) -> Counter:
    """What the projection makes of [begin, end) of `shard`, read independently with the SDK."""
    out: Counter = Counter()
    for resp in pull_range(stack.client, stack.project, stack.logstore, shard, begin, end):
        for log in resp.get_flatten_logs_json():
            doc = orjson.loads(log["content"])
            out[orjson.dumps({"speed": doc["speed"], "carID": doc["carID"], "seq": doc["seq"]})] += 1
    return out


def diff(delivered: Counter, expected: Counter) -> str:
    return f"{sum((expected - delivered).values())} lost, {sum((delivered - expected).values())} duplicated"


# ---------------------------------------------------------------------------------------------- events


def test_events_cover_the_range_contiguously_in_bounded_sub_ranges():
    job = BackfillJob("ep", "p", "l", "j", groups_per_event=7)
    events = job.events(ShardRange(2, cursor_from_position(100), cursor_from_position(120)))
    bounds = [(cursor_position(e.begin_cursor), cursor_position(e.end_cursor)) for e in events]
    assert bounds == [(100, 107), (107, 114), (114, 120)]
    assert {e.shard for e in events} == {2}
    assert [e.task_id for e in events] == ["j/2/0", "j/2/1", "j/2/2"]
    assert job.events(ShardRange(2, cursor_from_position(5), cursor_from_position(5))) == []


# ------------------------------------------------------------------------------------------ job manifests

JOB = BackfillJob("ep", "p", "l", "job")
END = Position("end", "end", "end")


def cursor_range(shard: int, begin: int, end: int) -> ShardRange:
    return ShardRange(shard, cursor_from_position(begin), cursor_from_position(end))


def request(start: Position, stop: Position = END, shards: list[int] | None = None, **parameter) -> JobRequest:
    return JobRequest.of(start, stop, shards, parameter)


def cursor_at(position: int) -> Position:
    cursor = cursor_from_position(position)
    return Position("cursor", cursor, cursor)


def no_progress(_ranges) -> list[int]:
    return []


def not_planned() -> list[ShardRange]:
    raise AssertionError("the job's own request must resume its recorded ranges without planning again")


def test_the_same_request_resumes_the_recorded_ranges_even_when_end_has_moved(tmp_path):
    manifests = JobManifests(tmp_path)
    first = bind_job(manifests, JOB, request(cursor_at(10)), lambda: [cursor_range(0, 10, 20)], no_progress)
    assert first == [cursor_range(0, 10, 20)]
    assert bind_job(manifests, JOB, request(cursor_at(10)), not_planned, no_progress) == first


def test_another_request_resolving_to_the_same_ranges_is_the_same_job(tmp_path):
    manifests = JobManifests(tmp_path)
    bind_job(manifests, JOB, request(cursor_at(10)), lambda: [cursor_range(0, 10, 20)], no_progress)
    again = bind_job(manifests, JOB, request(cursor_at(10), cursor_at(20)), lambda: [cursor_range(0, 10, 20)],
                     no_progress)
    assert again == [cursor_range(0, 10, 20)]


def test_another_range_for_any_shard_is_refused_naming_both_per_shard(tmp_path):
    manifests = JobManifests(tmp_path)
    bind_job(manifests, JOB, request(cursor_at(10)), lambda: [cursor_range(0, 10, 20), cursor_range(1, 5, 9)],
             no_progress)
    with pytest.raises(ConfigError) as refused:
        bind_job(manifests, JOB, request(cursor_at(0)), lambda: [cursor_range(0, 10, 20), cursor_range(1, 0, 9),
                                                                 cursor_range(2, 0, 3)], no_progress)
    text = str(refused.value)
    c = cursor_from_position
    assert f"shard 1: recorded [{c(5)}, {c(9)}), requested [{c(0)}, {c(9)})" in text
    assert f"shard 2: recorded none, requested [{c(0)}, {c(3)})" in text
    assert "shard 0" not in text
    assert f"started with (--from {c(10)} --to end --shards all)" in text


def test_another_parameter_is_refused(tmp_path):
    manifests = JobManifests(tmp_path)
    bind_job(manifests, JOB, request(cursor_at(10)), lambda: [cursor_range(0, 10, 20)], no_progress)
    with pytest.raises(ConfigError, match=r'--parameter: recorded \{\}, requested \{"topic":"other"\}'):
        bind_job(manifests, JOB, request(cursor_at(10), topic="other"), lambda: [cursor_range(0, 10, 20)],
                 no_progress)


def test_a_job_with_checkpoints_but_no_manifest_here_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"'job' already has checkpoints \(shard\(s\) 1 in scope backfill-job\)"):
        bind_job(JobManifests(tmp_path), JOB, request(cursor_at(0)), lambda: [cursor_range(1, 0, 5)], lambda _r: [1])
    assert not JobManifests(tmp_path).path("p", "l", "job").exists()


def test_of_two_first_runs_racing_on_one_job_id_the_first_recorded_wins(tmp_path):
    manifests = JobManifests(tmp_path)
    a = JobManifest("job", "p", "l", request(cursor_at(0)), (cursor_range(0, 0, 5),))
    b = JobManifest("job", "p", "l", request(cursor_at(3)), (cursor_range(0, 3, 5),))
    assert manifests.record(a) == a
    assert manifests.record(b) == a
    assert [f.name for f in manifests.path("p", "l", "job").parent.iterdir()] == ["job.json"]


# ------------------------------------------------------------------------------------ LocalInvoker, in-process


def test_run_shard_stopped_between_events_resumes_without_rereading(stack):
    stack.write(2000, per_group=20)
    begin, end = stack.cursors(0)
    job = BackfillJob(stack.endpoint, stack.project, stack.logstore, "in-process", groups_per_event=10)
    invoker = LocalInvoker(Runtime.from_env(stack.variables), CREDS, job.scope)
    halt = threading.Event()

    def stop_after_three(progress):
        if progress.events_done == 3:
            halt.set()

    first = run_shard(job, ShardRange(0, begin, end), invoker, halt, stop_after_three)
    assert (first.events_done, first.complete, first.error) == (3, False, None)
    again = run_shard(job, ShardRange(0, begin, end), invoker, threading.Event(), lambda _p: None)
    assert again.complete
    assert again.events_skipped == 3
    assert again.log_groups_read == first.log_groups_total - first.log_groups_read
    delivered = stack.delivered()
    assert delivered == values_in(stack, 0, begin, end), diff(delivered, values_in(stack, 0, begin, end))


# ------------------------------------------------------------------------------------------ subprocess


def test_backfill_time_range_delivers_exactly_what_was_received_in_it(stack, sls_clock):
    stack.write(1000)
    sls_clock.advance(100)
    middle = stack.write(1000)
    sls_clock.advance(100)
    stack.write(1000)
    start = int(sls_clock.now) - 100
    result = stack.cli("backfill", "--from", str(start), "--to", str(start + 100), "--json")
    assert result.returncode == 0, result.stderr
    assert summary_of(result)["records_read"] == 1000
    assert stack.delivered() == Counter(middle)


def test_backfill_iso_time_range_same_as_unix(stack, sls_clock):
    stack.write(500)
    sls_clock.advance(60)
    middle = stack.write(500)
    sls_clock.advance(60)
    stack.write(500)
    start = int(sls_clock.now) - 60
    iso = [datetime.fromtimestamp(t, timezone.utc).isoformat() for t in (start, start + 60)]
    result = stack.cli("backfill", "--from", iso[0], "--to", iso[1])
    assert result.returncode == 0, result.stderr
    assert stack.delivered() == Counter(middle)


def test_backfill_cursor_range_of_one_shard(stack):
    stack.write(3000, per_group=30)
    begin, _end = stack.cursors(1)
    start, stop_at = (cursor_from_position(cursor_position(begin) + n) for n in (10, 35))
    result = stack.cli("backfill", "--shards", "1", "--from", start, "--to", stop_at, "--groups-per-event", "4",
                       "--json")
    assert result.returncode == 0, result.stderr
    summary = summary_of(result)
    assert [(s["shard"], s["events_total"], s["log_groups_read"]) for s in summary["shards"]] == [(1, 7, 25)]
    expected = values_in(stack, 1, start, stop_at)
    assert sum(expected.values()) == 25 * 30
    assert stack.delivered() == expected


def test_backfill_sigterm_to_group_finishes_events_then_rerun_completes_exactly(stack):
    stack.extra["SLS_PULL_COUNT"] = "5"  # slower, so the signal surely lands mid-job
    stack.write(100_000, per_group=50)
    args = ("backfill", "--job-id", "graceful", "--groups-per-event", "20", "--processes", "2", "--json")
    proc = stack.popen(*args)
    wait_for(lambda: any(checkpoint_files(stack, "backfill-graceful")), 60, "the first confirmed batch")
    stop(proc, signal.SIGTERM, group=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    first = orjson.loads(out)
    assert not first["complete"]
    assert 0 < first["records_read"] < 100_000
    rerun = stack.cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    second = summary_of(rerun)
    assert second["complete"]
    assert first["records_read"] + second["records_read"] == 100_000
    assert sum(s["events_skipped"] for s in second["shards"]) > 0
    delivered = stack.delivered()
    assert delivered == Counter(stack.written), diff(delivered, Counter(stack.written))


def test_backfill_killed_then_rerun_loses_nothing_and_duplicates_at_most_the_batches_in_flight(stack):
    pull_count = 10
    stack.extra["SLS_PULL_COUNT"] = str(pull_count)
    stack.write(100_000, per_group=50)
    proc = stack.popen("backfill", "--job-id", "killed", "--groups-per-event", "200")
    wait_for(lambda: len(list(checkpoint_files(stack, "backfill-killed"))) == 2, 60, "both shards under way")
    stop(proc, signal.SIGKILL, group=True)
    proc.communicate(timeout=30)
    rerun = stack.cli("backfill", "--job-id", "killed", "--groups-per-event", "200")
    assert rerun.returncode == 0, rerun.stderr
    delivered = stack.delivered()
    expected = Counter(stack.written)
    assert set(delivered) == set(expected), diff(delivered, expected)
    duplicated = sum((delivered - expected).values())
    assert duplicated <= 2 * MAX_IN_FLIGHT_PAGES * pull_count * 50


def test_backfill_dry_run_prints_exactly_what_a_real_run_produces(stack):
    stack.write(3000, per_group=25)
    poison = [{"content": "not json"}, {"content": '{"speed": "fast", "carID": 1, "seq": -1}'}]
    put_groups(stack.client, stack.project, stack.logstore, [poison])
    dry = stack.cli("backfill", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    dry_summary = orjson.loads(dry.stderr[dry.stderr.index("{\n"):])
    assert (dry_summary["dry_run"], dry_summary["dead_lettered"]) == (True, 2)
    assert "would be dead-lettered: content field 'content' is not valid JSON" in dry.stderr
    printed = Counter(line.encode() for line in dry.stdout.splitlines())
    assert not list(checkpoint_files(stack, f"backfill-{dry_summary['job_id']}"))
    real = stack.cli("backfill", "--json")
    assert real.returncode == 0, real.stderr
    assert summary_of(real)["dead_lettered"] == 2
    assert stack.delivered() == printed
    assert sum(printed.values()) == 3000
    assert len(read_all(stack.bootstrap, stack.dlq)) == 2


def test_backfill_all_shards_includes_readonly_parents(stack):
    stack.write(1000)
    stack.client.split_shard(stack.project, stack.logstore, 1, "c0000000000000000000000000000000")
    stack.write(1000)
    result = stack.cli("backfill", "--shards", "all", "--json")
    assert result.returncode == 0, result.stderr
    summary = summary_of(result)
    assert [s["shard"] for s in summary["shards"]] == [0, 1, 2, 3]
    assert next(s for s in summary["shards"] if s["shard"] == 1)["records_read"] == 500
    assert stack.delivered() == Counter(stack.written)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_backfill_process_count_does_not_change_the_result(stack, processes):
    stack.write(5000)
    result = stack.cli("backfill", "--processes", processes, "--groups-per-event", "15", "--json")
    assert result.returncode == 0, result.stderr
    assert summary_of(result)["processes"] == int(processes)
    assert stack.delivered() == Counter(stack.written)


@pytest.mark.parametrize("job_id", [(), ("--job-id", "explicit")])
def test_backfill_to_end_rerun_keeps_the_end_resolved_at_its_first_run(stack, job_id):
    first_data = stack.write(1000)
    first = stack.cli("backfill", *job_id, "--json")
    assert first.returncode == 0, first.stderr
    stack.write(1000)  # moves `end`; a re-run of the same command is the same job, not another range
    rerun = stack.cli("backfill", *job_id, "--json")
    assert rerun.returncode == 0, rerun.stderr
    summary = summary_of(rerun)
    assert (summary["complete"], summary["produced"]) == (True, 0)
    assert [s["log_groups_total"] for s in summary["shards"]] == [s["log_groups_total"]
                                                                   for s in summary_of(first)["shards"]]
    assert "resuming the ranges recorded at its first run" in rerun.stderr
    assert stack.delivered() == Counter(first_data)


def test_backfill_with_the_sls_store_deletes_its_consumer_group_when_complete(stack):
    """SLS allows 30 consumer groups per logstore: a finished job gives its group back, and stays complete."""
    expected = stack.write(2000)
    stack.extra["CHECKPOINT_STORE"] = "sls"
    first = stack.cli("backfill", "--job-id", "cg-job", "--groups-per-event", "10")
    assert first.returncode == 0, first.stderr
    groups = {g.get_consumer_group_name() for g in
              stack.client.list_consumer_group(stack.project, stack.logstore).get_consumer_groups()}
    assert not any(name.endswith("-backfill-cg-job") for name in groups), groups
    rerun = stack.cli("backfill", "--job-id", "cg-job", "--json")
    assert rerun.returncode == 0, rerun.stderr
    summary = summary_of(rerun)
    assert (summary["already_complete"], summary["complete"], summary["produced"]) == (True, True, 0)
    assert stack.delivered() == Counter(expected)
