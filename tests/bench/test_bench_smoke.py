"""The benchmark harness end to end on a tiny data set: every method runs and delivers every record.

A regression guard for `python3 -m bench`, not a timing test: it asserts completeness and correctness (the
harness reads each output topic back and fingerprints it against the data set), never speed.
"""

import json
import subprocess
import sys
from pathlib import Path

from bench.run import ALERT_REPS

REPO = Path(__file__).resolve().parents[2]
RUNS = ("at_least_once", "exactly_once", "naive", "lesson", "stages", "range")


def test_bench_on_a_tiny_data_set_delivers_every_record_for_every_method(kafka, tmp_path):
    cmd = [sys.executable, "-m", "bench", "--records", "3000", "--shards", "2", "--lesson-records", "200",
           "--range-records", "2500", "--cold-start-runs", "1", "--layout-records", "300", "--widths", "25",
           "--small-reps", "1", "--alert-records", "400",
           "--bootstrap", kafka.bootstrap, "--out", str(tmp_path)]

    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)

    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "latest.json").read_text())
    expected = {"at_least_once": 3000, "exactly_once": 3000, "naive": 3000, "stages": 3000, "lesson": 200,
                "range": 2500}
    for name in RUNS:
        verdict = doc["verification"][name]
        assert verdict == {"records": expected[name], "expected_records": expected[name], "digest_matches": True,
                           "bad_keys": 0, "ok": True}, name
        assert doc[name]["records"] == expected[name], name
        assert doc[name]["records_per_second"] > 0, name
    # Every part of the function's loop was timed in place: a stage of 0 s would mean its wrapper was bypassed.
    stages = doc["stages"]["stage_seconds"]
    assert set(stages) == {"pull", "decompress", "decode", "project", "produce", "acks"}
    assert all(seconds > 0 for seconds in stages.values()), stages
    assert set(doc["ratios"]) == {"at_least_once_vs_lesson", "at_least_once_vs_naive", "exactly_once_vs_at_least_once"}
    assert doc["cold_start"]["warm_bytecode"]["total_ms"] > 0
    # The alert rules ran: their runs were verified like every other, and the drop was reported.
    assert [name for name in doc["verification"] if name.startswith("alerts/")] == [
        f"alerts/{variant}/{rep}" for rep in range(ALERT_REPS) for variant in ("without", "with")]
    assert doc["targets"]["alerts_throughput_drop"]["value"] == doc["alerts"]["throughput_drop"]
    assert doc["alerts"]["partial_records"] >= ALERT_REPS  # at least one partial per page, per run with the rules
    assert 0 < doc["alerts"]["observer_cpu_share"] < 1  # measured inside the runs, where the observer ran
    # Each cold start also ran a first invocation, which would have raised had it not delivered its range.
    assert doc["cold_start"]["warm_bytecode"]["first_invocation_ms"] > 0
    assert all("met" in t for t in doc["targets"].values())
    for layout in ("kv", "json", "raw", "tags"):
        run = doc["layouts"][f"{layout}-25"]
        for method in ("function", "naive"):
            assert doc["verification"][f"{layout}-25/{method}"]["ok"], (layout, method)
            assert run[method]["records"] == 300
            assert run[method]["cpu_seconds_per_million"] > 0
        assert set(doc["layout_ratios"][f"{layout}-25"]) >= {"vs_naive", "cpu_vs_naive"}
    table = (tmp_path / "latest.md").read_text()
    assert "| (c) this project, at-least-once | 3,000 |" in table
    assert "extrapolated" in table
    assert "| raw | 25 fields (" in table
    for mode in ("at_least_once", "exactly_once"):
        assert doc["verification"][f"small/{mode}"]["ok"], mode
        assert set(doc["small_ranges"][mode]["latency_ms"]) == {"300", "3000", "30000"}
    assert "| 3,000 | " in table


def test_memory_bench_runs_every_layout_and_verifies_it(kafka, tmp_path):
    out = tmp_path / "memory.md"
    cmd = [sys.executable, "-m", "bench.memory", "--records", "500", "--bootstrap", kafka.bootstrap, "--out", str(out)]

    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)

    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "fields" in line]
    assert [tuple(cell.strip() for cell in row.split("|")[1:3]) for row in rows] == [
        (layout, f"{width} fields") for width in (7, 25) for layout in ("kv", "json", "raw", "tags")]
    assert all("| 500 |" in row and "| yes |" in row for row in rows), rows
