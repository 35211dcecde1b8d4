import json
import re
from pathlib import Path

import pytest

from processor import planning
from processor.cli import main
from processor.commands.plan import benchmark_throughput
from processor.planning import Workload, evaluate, plan, shards_needed


def test_evaluate_reference_load_numbers():
    # 1000 records/s into one shard, 5000 records/s per invocation, 60 s interval.
    fit = evaluate(Workload(write_rate=1000, throughput=5000), 60)
    assert fit.records == 60_000
    assert fit.processing_seconds == pytest.approx(60_000 / 5000 + 1.0)  # 13 s
    assert fit.busy == pytest.approx(13 / 60)
    assert fit.timeout_seconds == 49  # ceil(3 * 13 + 10)
    assert fit.catch_up_speed == pytest.approx(60 / 13)
    assert fit.invocations_per_day == 1440
    assert fit.freshness_seconds == pytest.approx(73)
    assert fit.fits


def test_evaluate_shards_split_rate_and_multiply_invocations():
    fit = evaluate(Workload(write_rate=4000, throughput=5000, shards=4), 30)
    assert fit.records == 30_000
    assert fit.invocations_per_day == 2880
    assert fit.invocations_per_day_total == 4 * 2880


def test_plan_minimum_interval_is_where_overhead_stops_dominating():
    # busy = 0.2 + 1/I <= 0.5  =>  I >= 3.33, so 4 s; 3 s would be 53 % busy.
    result = plan(Workload(write_rate=1000, throughput=5000))
    assert (result.min_interval, result.max_interval) == (4, 600)
    assert not evaluate(result.workload, 3).fits
    assert evaluate(result.workload, 3).busy == pytest.approx(0.2 + 1 / 3)


def test_plan_light_load_spans_documented_range():
    result = plan(Workload(write_rate=10, throughput=5000))
    assert (result.min_interval, result.max_interval) == (3, 600)
    assert result.shards_needed == 1


def test_plan_hot_shard_fits_nowhere_and_names_shard_count():
    workload = Workload(write_rate=20_000, throughput=5000, shards=4)  # each shard needs 100 % of throughput
    result = plan(workload)
    assert not result.fits
    assert result.min_interval is None
    assert result.shards_needed == 9  # 20000 / (5000 * (0.5 - 1/600)) = 8.03
    assert plan(Workload(write_rate=20_000, throughput=5000, shards=9)).fits
    assert not plan(Workload(write_rate=20_000, throughput=5000, shards=8)).fits


def test_plan_timeout_beyond_fc_maximum_caps_interval():
    # A huge safety factor makes long intervals need more than FC's 86400 s.
    workload = Workload(write_rate=100, throughput=1000, timeout_safety=3000)
    result = plan(workload)
    assert result.max_interval is not None
    assert result.max_interval < 600
    assert evaluate(workload, result.max_interval).timeout_seconds <= 86_400
    assert evaluate(workload, result.max_interval + 1).timeout_seconds > 86_400


def test_evaluate_short_interval_catch_up_is_paced_by_trigger():
    # While catching up the trigger fires about every 2 s: a 3 s window drains at most 1.5x real time.
    fit = evaluate(Workload(write_rate=1, throughput=5000), 3)
    assert fit.catch_up_speed == pytest.approx(1.5)
    slow = evaluate(Workload(write_rate=1, throughput=5000, headroom=0.99, overhead_seconds=2.9), 3)
    assert slow.catch_up_speed < 1.1


@pytest.mark.parametrize("bad", [Workload(write_rate=0, throughput=1), Workload(write_rate=1, throughput=0),
                                 Workload(write_rate=1, throughput=1, shards=0)])
def test_plan_nonpositive_inputs_raise(bad):
    with pytest.raises(ValueError, match="must be positive"):
        plan(bad)


def test_shards_needed_impossible_overhead_raises():
    with pytest.raises(ValueError, match="no room"):
        shards_needed(Workload(write_rate=1, throughput=1, overhead_seconds=400))


def test_warnings_by_shard_volume():
    assert planning.warnings(Workload(write_rate=1000, throughput=5000)) == []
    assert "short interval" in planning.warnings(Workload(write_rate=10_000, throughput=5000, record_bytes=200))[0]
    # 50 MB/s needs 10 shards for the write limit, 100,000 / (5000 x (0.5 - 1/600)) = 40.1 for the throughput:
    # the advice names the count that satisfies both, as the "no interval fits" line does.
    over = planning.warnings(Workload(write_rate=100_000, throughput=5000, record_bytes=500, shards=2))
    assert "split the logstore into at least 41 shards" in over[0]
    assert plan(Workload(write_rate=100_000, throughput=5000, record_bytes=500, shards=2)).shards_needed == 41
    assert shards_needed(Workload(write_rate=100_000, throughput=10**9, record_bytes=500)) == 10


def test_benchmark_throughput_reads_at_least_once_figure(tmp_path):
    path = tmp_path / "latest.json"
    path.write_text(json.dumps({"at_least_once": {"records_per_second": 42_000.5}, "exactly_once": {}}))
    got = benchmark_throughput(path)
    assert got.records_per_second == 42_000.5
    assert str(path) in got.source


@pytest.mark.parametrize("content", [None, "not json", '{"exactly_once": {"records_per_second": 9}}',
                                     '{"at_least_once": {"records_per_second": 0}}',
                                     '{"at_least_once": {"records_per_second": "fast"}}'])
def test_benchmark_throughput_missing_or_bad_falls_back_to_default(tmp_path, content):
    path = tmp_path / "latest.json"
    if content is not None:
        path.write_text(content)
    got = benchmark_throughput(path)
    assert got.records_per_second == planning.DEFAULT_THROUGHPUT
    assert got.source.startswith("default; ")


def test_plan_command_prints_range_timeout_and_snippet(capsys):
    assert main(["plan", "--write-rate", "2000", "--shards", "2", "--throughput", "5000", "--interval", "30"]) == 0
    out = capsys.readouterr().out
    assert "1,000 records/s per shard" in out
    assert "triggerInterval that fits: 4-600 s" in out
    assert "FC timeout that fits every interval in that range: >= 373 s" in out
    assert "vars.triggerInterval: 30" in out
    assert "vars.timeout: 31" in out  # ceil(3 * (30000/5000 + 1) + 10)
    assert "5,760" in out  # 2 shards x 2880 invocations/day at 30 s


def test_plan_command_interval_is_moved_into_range(capsys):
    assert main(["plan", "--write-rate", "1000", "--throughput", "5000", "--interval", "3"]) == 0
    assert "vars.triggerInterval: 4" in capsys.readouterr().out


def test_plan_command_no_fit_exits_1_with_shard_advice(capsys):
    assert main(["plan", "--write-rate", "20000", "--shards", "4", "--throughput", "5000"]) == 1
    out = capsys.readouterr().out
    assert "no trigger interval fits" in out
    assert "at least 9 shards" in out


@pytest.mark.parametrize("args", [["--write-rate", "-5"], ["--write-rate", "fast"], [],
                                  ["--write-rate", "10", "--shards", "1.5"],
                                  ["--write-rate", "10", "--throughput", "0"]])
def test_plan_command_bad_arguments_exit_2(capsys, args):
    with pytest.raises(SystemExit) as exc:
        main(["plan", *args])
    assert exc.value.code == 2
    assert "sls-kafka plan: error:" in capsys.readouterr().err


def _prose(text: str) -> str:
    """Words only: README lines are wrapped and s.yaml comments start with '#'."""
    return " ".join(line.strip().lstrip("#") for line in text.splitlines()).replace("  ", " ")


def test_plan_assumes_the_default_throughput_not_the_benchmarks(capsys):
    assert main(["plan", "--write-rate", "1000"]) == 0
    out = capsys.readouterr().out
    assert (f"throughput: {planning.DEFAULT_THROUGHPUT:,.0f} records/s per invocation (default for a remote "
            "broker") in out
    fit = evaluate(Workload(write_rate=1000, throughput=planning.DEFAULT_THROUGHPUT), 60)
    assert f"vars.timeout: {fit.timeout_seconds}  " in out
    assert planning.TIMEOUT_ADVICE in out


def test_plan_s_yaml_and_readme_state_one_throughput_and_one_timeout_advice():
    root = Path(__file__).resolve().parents[2]
    s_yaml, readme = _prose((root / "s.yaml").read_text()), _prose((root / "README.md").read_text())
    fit = evaluate(Workload(write_rate=1000, throughput=planning.DEFAULT_THROUGHPUT), 60)
    assert (f"default throughput of {planning.DEFAULT_THROUGHPUT:,.0f} records/s per invocation, conservative for a "
            "remote broker") in s_yaml
    assert f"60 s needs a timeout of at least {fit.timeout_seconds} s" in s_yaml
    assert f"`plan` assumes {planning.DEFAULT_THROUGHPUT:,.0f} records/s per invocation unless `--throughput`" in readme
    assert planning.TIMEOUT_ADVICE in s_yaml
    assert planning.TIMEOUT_ADVICE in readme


def test_plan_split_advice_names_one_shard_count(capsys):
    # 150,000 records/s of 130 bytes is 19.5 MB/s: the write limit needs 4 shards, the throughput 2.
    assert main(["plan", "--write-rate", "150000", "--throughput", "194604"]) == 1
    counts = re.findall(r"at least (\d+) shards", capsys.readouterr().out)
    assert counts == ["4", "4"]
