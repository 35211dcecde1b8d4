"""`sls-kafka backfill` as a user meets it: piped into head, its progress, its last words and its exit codes.

Each test runs the real command (a subprocess, worker processes included) against the emulator and the broker.
"""

from __future__ import annotations

import fcntl
import io
import itertools
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import Counter
from datetime import datetime

import orjson

from processor.backfill.runs import ShardProgress
from processor.commands.backfill_view import LogProgressView, progress_view
from tests.kafka_helpers import read_all
from tests.pipeline_support import json_contents, put_groups
from tests.processor.commands_support import REPO, checkpoint_files, stack_fixture, stop  # noqa: F401  (`stack`)
from tests.waiting import wait_for

PROGRESS = re.compile(r"^(\S+ \S+) INFO processor\.commands\.backfill: shard (\d+) \[[#-]+\]\s+([\d.]+)%", re.M)


def test_dry_run_piped_into_head_ends_quietly_at_once(stack):
    stack.write(20_000)  # about 1 MB of lines: far more than a pipe holds
    started = time.monotonic()
    proc = stack.popen("backfill", "--dry-run")
    head = [proc.stdout.readline() for _ in range(10)]
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, err
    assert all(orjson.loads(line)["seq"] >= 0 for line in head)
    for noise in ("Broken pipe", "retrying", "ERROR", "Traceback", '"job_id"'):
        assert noise not in err, err
    assert elapsed < 10, f"{elapsed:.1f}s"


def test_progress_moves_within_an_event_and_is_logged_every_period_to_a_file(stack, sls_faults):
    stack.extra["SLS_PULL_COUNT"] = "1"
    stack.write(20_000)  # 200 log groups per shard: one event each at the default 2000 per event
    # A floor under the run's length that does not depend on this machine's speed: 200 pulls per shard at 20 ms.
    sls_faults.delay(op="pull_logs", seconds=0.02, times=400)
    result = stack.cli("backfill", "--progress-every", "0.5")
    assert result.returncode == 0, result.stderr
    lines = [(datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f").timestamp(), int(shard), float(pct))
             for t, shard, pct in PROGRESS.findall(result.stderr)]
    assert {shard for _, shard, _ in lines} == {0, 1}
    assert any(0 < pct < 100 for _, _, pct in lines), result.stderr
    rounds = sorted({t for t, _, _ in lines})
    assert rounds[-1] - rounds[0] > 2, "the run was too short to show anything"
    gaps = [b - a for a, b in itertools.pairwise(rounds)]
    assert max(gaps) < 0.5 + 0.5, gaps


def test_default_summary_is_short_with_the_resume_hint_then_complete_then_already_complete(stack):
    stack.extra["SLS_PULL_COUNT"] = "5"
    stack.write(20_000)
    args = ("backfill", "--job-id", "told", "--groups-per-event", "20")
    proc = stack.popen(*args)
    wait_for(lambda: any(checkpoint_files(stack, "backfill-told")), 60, "the first confirmed batch")
    stop(proc, signal.SIGTERM, group=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert len(out.splitlines()) <= 3, out
    assert "stopped before its end" in out
    assert "run the same command again to resume" in out
    rest = stack.cli(*args, "--json")
    assert rest.returncode == 0, rest.stderr
    summary = orjson.loads(rest.stdout)
    assert summary["complete"]
    assert all(s["seconds"] == round(s["seconds"], 3) for s in summary["shards"])
    again = stack.cli(*args)
    assert again.returncode == 0, again.stderr
    assert len(again.stdout.splitlines()) == 1, again.stdout
    assert "backfill job told is already complete" in again.stdout
    assert stack.delivered().keys() == Counter(stack.written).keys()


def test_log_groups_lost_to_retention_are_counted_and_end_with_their_own_exit_code(stack, sls_clock, sls_emulator):
    stack.extra["SLS_PULL_COUNT"] = "5"
    stack.write(100_000)  # 1000 log groups per shard
    proc = stack.popen("backfill", "--job-id", "expiring", "--groups-per-event", "10", "--json")
    wait_for(lambda: len(list(checkpoint_files(stack, "backfill-expiring"))) == 2, 60, "both shards under way")
    sls_clock.advance(100)
    sls_emulator.store.set_ttl_seconds(stack.project, stack.logstore, 50)  # the rest expires now
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err
    summary = orjson.loads(out)
    assert summary["complete"]
    assert summary["lost_log_groups"] == sum(s["lost_log_groups"] for s in summary["shards"]) > 0
    assert summary["lost_log_groups"] + summary["log_groups"] == 2000
    assert sum(stack.delivered().values()) >= summary["log_groups"] * 50
    assert "--json" in stack.cli("backfill", "--help").stdout
    assert "4 log groups expired" in " ".join(stack.cli("backfill", "--help").stdout.split())


def test_more_processes_than_shards_reports_the_workers_that_ran(stack):
    stack.write(1000)
    result = stack.cli("backfill", "--processes", "8", "--json")
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["processes"] == 2
    assert "2 worker process(es)" in result.stderr
    assert stack.delivered() == Counter(stack.written)


def test_dry_run_dead_letters_a_record_over_message_max_bytes_instead_of_printing_it(stack):
    stack.extra["PROJECTION_FIELDS"] = "speed:number,carID:int,seq:int,note:str?"
    small = [{"speed": 5, "carID": i, "seq": i} for i in range(20)]
    huge = {"speed": 9, "carID": 777, "seq": 777, "note": "n" * 1_200_000}
    put_groups(stack.client, stack.project, stack.logstore, [json_contents([*small[:10], huge, *small[10:]])])
    dry = stack.cli("backfill", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    printed = [orjson.loads(line) for line in dry.stdout.splitlines()]
    assert sorted(p["seq"] for p in printed) == list(range(20))
    summary = orjson.loads(dry.stderr[dry.stderr.index("{\n"):])
    assert (summary["produced"], summary["dead_lettered"]) == (20, 1)
    assert "would be dead-lettered: Kafka refused the record" in dry.stderr
    real = stack.cli("backfill", "--json")
    assert real.returncode == 0, real.stderr
    assert (orjson.loads(real.stdout)["produced"], orjson.loads(real.stdout)["dead_lettered"]) == (20, 1)
    assert len(read_all(stack.bootstrap, stack.dlq)) == 1


# ------------------------------------------------------------------------------------------ on a terminal


def screen(raw: str) -> list[str]:
    """What a terminal shows after `raw`: the cursor moves and erasures rich and the old view use, colours dropped."""
    rows, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", raw):
        if token == "\n":
            row, col = row + 1, 0
            if row == len(rows):
                rows.append("")
        elif token == "\r":
            col = 0
        elif token.startswith("\x1b["):
            arg, code = token[2:-1], token[-1]
            if code in "AF":  # up (F: to the line's start)
                row = max(0, row - int(arg or 1))
                col = 0 if code == "F" else col
            elif code == "K":
                rows[row] = "" if arg == "2" else rows[row][:col]
        else:
            rows[row] = rows[row][:col].ljust(col) + token + rows[row][col + len(token):]
            col += len(token)
    return [r.rstrip() for r in rows if r.strip()]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_rich_a_terminal_gets_log_lines_for_every_shard(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "rich.progress", None)
    view = progress_view(Terminal(), 10, [ShardProgress(1, 50, 1), ShardProgress(0, 100, 1)])
    assert isinstance(view, LogProgressView)
    with caplog.at_level("INFO", logger="processor.commands.backfill"):
        view.update(ShardProgress(1, 50, 1, log_groups_done=20, records_read=100, seconds=1.0))
    assert [r.getMessage().split("[")[0] for r in caplog.records][-2:] == ["shard 0 ", "shard 1 "]
    assert "40.0%" in caplog.records[-1].getMessage()


def test_terminal_progress_shows_every_shard_and_keeps_what_is_logged_meanwhile(stack):
    """The SIGINT warning (the parent's) and dead letters (the workers') stay on the screen above the bars."""
    stack.extra["SLS_PULL_COUNT"] = "1"  # slow enough to be stopped mid-way
    poison = [{"content": "not json"}]
    for _ in range(5):
        stack.write(10_000)
        put_groups(stack.client, stack.project, stack.logstore, [poison, poison])
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "processor", "backfill", "--groups-per-event", "20", "--dry-run"],
                            env={**stack.env, "TERM": "xterm", "COLUMNS": "200"}, stdout=subprocess.DEVNULL,
                            stderr=follower, text=True, cwd=REPO, start_new_session=True)
    os.close(follower)
    raw = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not chunk:
                return
            raw.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    wait_for(lambda: raw.count(b"would be dead-lettered") >= 2, 60, "the first dead letters on the terminal")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    reader.join(timeout=10)
    os.close(leader)
    shown = screen(raw.decode(errors="replace"))
    assert proc.returncode == 3, "\n".join(shown)
    assert any("SIGINT received" in row for row in shown), "\n".join(shown)
    assert sum("would be dead-lettered" in row for row in shown) >= 2, "\n".join(shown)
    bars = [row for row in shown if re.match(r"\s*shard \d ", row)]
    assert sorted(row.split()[1] for row in bars) == ["0", "1"], "\n".join(shown)
