"""`sls-kafka lag` on real checkpoints: a backfill stopped at a time, the trigger runner's progress."""

from __future__ import annotations

import orjson

from tests.processor.commands_support import stack_fixture  # noqa: F401  (the `stack` fixture)


def lag_rows(stack, *args):
    result = stack.cli("lag", "--json", *args)
    assert result.returncode == 0, result.stderr
    return {row["shard"]: row for row in orjson.loads(result.stdout)["shards"]}


def test_lag_of_backfill_stopped_at_a_time_in_seconds_and_groups(stack, sls_clock):
    stack.write(1000, per_group=50)  # 10 groups per shard at t0
    t0 = int(sls_clock.now)
    sls_clock.advance(30)
    stack.write(600, per_group=50)  # 6 groups per shard at t0 + 30
    sls_clock.advance(45)
    stack.write(400, per_group=50)  # 4 groups per shard at t0 + 75
    done = stack.cli("backfill", "--job-id", "lagging", "--to", str(t0 + 31))
    assert done.returncode == 0, done.stderr
    rows = lag_rows(stack, "--scope", "backfill-lagging")
    for shard in (0, 1):
        row = rows[shard]
        assert row["lag_log_groups"] == 4
        assert row["end_time"] - row["checkpoint_time"] == 45
        assert row["lag_seconds"] == 45
        assert row["end_time"] == int(sls_clock.now)
        assert row["status"] == "readwrite"
    assert lag_rows(stack, "--scope", "backfill-lagging", "--shards", "1").keys() == {1}


def test_lag_table_with_no_checkpoint_and_after_the_runner_caught_up(stack):
    stack.write(300)
    table = stack.cli("lag")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["shard", "status", "end", "time", "(UTC)", "checkpoint", "time", "(UTC)", "lag", "s",
                                "lag", "groups", "note"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "1"]
    assert all(line.endswith("no checkpoint") for line in lines[1:])
    ran = stack.cli("run", "--once", "--start", "begin")
    assert ran.returncode == 0, ran.stderr
    for scope in ("", "trigger-runner"):
        rows = lag_rows(stack, "--scope", scope)
        assert [(r["lag_seconds"], r["lag_log_groups"]) for r in rows.values()] == [(0, 0), (0, 0)]
    stack.write(200, per_group=50)
    rows = lag_rows(stack, "--scope", "trigger-runner")
    assert [r["lag_log_groups"] for r in rows.values()] == [2, 2]
