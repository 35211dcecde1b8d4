"""Every command rejects bad arguments with a clear message and a non-zero exit, before touching Kafka.

Kafka points at a closed port here: a command that got as far as producing would hang in retries instead of
failing at once with the expected message.
"""

from __future__ import annotations

import argparse
import time

import pytest

from common.errors import ConfigError
from processor.cli import main
from processor.commands.common import check_order, int_in_range, parse_position, parse_shards
from processor.sls.shards import cursor_from_position
from tests.processor.commands_support import stack_fixture  # noqa: F401  (the `stack` fixture)

NO_KAFKA = "127.0.0.1:9"


# ------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("begin", "begin", "begin"),
    ("END", "end", "end"),
    ("1714521600", "time", 1714521600),
    ("2024-05-01T00:00:00Z", "time", 1714521600),
    ("2024-05-01T08:00:00+08:00", "time", 1714521600),
    ("2024-05-01 08:00:00+08:00", "time", 1714521600),
    ("MTUyOTQ4MDIwOTY1NTk3ODQ2Mw==", "cursor", "MTUyOTQ4MDIwOTY1NTk3ODQ2Mw=="),
])
def test_parse_position_accepted_forms(text, kind, value):
    position = parse_position(text, "--from")
    assert (position.kind, position.value) == (kind, value)


@pytest.mark.parametrize(("text", "needle"), [
    ("2024-05-01T08:00:00", "has no UTC offset: add one"),
    ("2024-13-01T00:00:00Z", "is not an ISO-8601 time"),
    ("1714521600000", "looks like milliseconds"),
    ("yesterday", "is not a cursor, unix seconds, an ISO-8601 time"),
    ("MTIz!!", "is not a cursor"),
])
def test_parse_position_bad_text_names_flag_and_forms(text, needle):
    with pytest.raises(ConfigError, match="--from") as exc:
        parse_position(text, "--from")
    assert needle in str(exc.value)


def test_parse_position_start_takes_no_cursor():
    with pytest.raises(ConfigError, match="is not unix seconds, an ISO-8601 time"):
        parse_position("MTUyOTQ4MDIwOTY1NTk3ODQ2Mw==", "--start", allow_cursor=False)


@pytest.mark.parametrize(("start", "stop"), [
    ("2024-05-02T00:00:00Z", "2024-05-01T00:00:00Z"),
    ("1714521601", "1714521600"),
    (cursor_from_position(11), cursor_from_position(10)),
    ("100", "begin"),
    ("end", "100"),
])
def test_check_order_to_before_from_rejected(start, stop):
    with pytest.raises(ConfigError, match=r"lies (before|after)"):
        check_order(parse_position(start, "--from"), parse_position(stop, "--to"))


def test_check_order_rejects_exactly_the_pairs_it_can_order_without_sls():
    """A time and a cursor are ordered only by SLS (the range resolved later): only same-kind pairs and `begin`/`end`
    are judged here, every other pair is left to the resolution."""
    texts = ["begin", "1714521600", "1714521601", cursor_from_position(5), cursor_from_position(6), "end"]
    t1, t2, c5, c6 = texts[1:5]

    def rejected(start: str, stop: str) -> bool:
        try:
            check_order(parse_position(start, "--from"), parse_position(stop, "--to"))
        except ConfigError:
            return True
        return False

    verdicts = {(a, b) for a in texts for b in texts if rejected(a, b)}

    to_begin = {(a, "begin") for a in texts if a != "begin"}
    from_end = {("end", b) for b in texts if b != "end"}
    assert verdicts == to_begin | from_end | {(t2, t1), (c6, c5)}
    assert (t1, c5) not in verdicts  # a time after the cursor's data, or before: unknowable here
    assert (c6, t1) not in verdicts


def test_parse_shards_list_all_and_garbage():
    assert parse_shards("0, 1,3") == [0, 1, 3]
    assert parse_shards("all") is None
    with pytest.raises(argparse.ArgumentTypeError, match="not a shard list"):
        parse_shards("0,x")


def test_int_in_range_bounds():
    assert int_in_range(3, 600)("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match=r"out of range 3\.\.600"):
        int_in_range(3, 600)("2")


# ----------------------------------------------------------------------------------- commands, in-process


@pytest.fixture
def cli(stack, monkeypatch, capsys):
    """Run `sls-kafka ARGS` in-process against the test logstore; returns (exit code, stderr)."""
    for name, value in {**stack.variables, "KAFKA_BOOTSTRAP_SERVERS": NO_KAFKA}.items():
        monkeypatch.setenv(name, value)

    def run(*argv: str) -> tuple[int, str]:
        started = time.monotonic()
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
        assert time.monotonic() - started < 20, "the command took long enough to have tried Kafka"
        return code, capsys.readouterr().err

    stack.write(100)
    return run


@pytest.mark.parametrize("command", ["backfill", "lag"])
def test_unknown_shard_rejected_with_the_shards_there_are(cli, command):
    code, err = cli(command, "--shards", "0,7")
    assert code == 2
    assert f"sls-kafka {command}: error: --shards: unknown shard(s) 7; the logstore has shards 0, 1" in err


def test_backfill_to_before_from_rejected(cli):
    code, err = cli("backfill", "--from", "2024-05-02T00:00:00Z", "--to", "2024-05-01T00:00:00Z")
    assert code == 2
    assert "--to 2024-05-01T00:00:00Z lies before --from 2024-05-02T00:00:00Z" in err


def test_backfill_cursor_range_reversed_in_shard_rejected(cli, stack):
    begin, end = stack.cursors(1)
    code, err = cli("backfill", "--shards", "1", "--from", end, "--to", begin)
    assert code == 2
    assert f"--to {begin} lies before --from {end}" in err


def test_backfill_time_after_cursor_in_shard_rejected(cli, stack):
    _begin, end = stack.cursors(1)
    code, err = cli("backfill", "--shards", "1", "--from", end, "--to", "1000000000")
    assert code == 2
    assert "--to 1000000000 lies before --from" in err
    assert "in shard 1" in err


def test_backfill_malformed_cursor_rejected(cli):
    code, err = cli("backfill", "--shards", "0", "--from", "MTIz!!")
    assert code == 2
    assert "--from 'MTIz!!' is not a cursor, unix seconds, an ISO-8601 time" in err


def test_backfill_cursor_of_another_shard_rejected(cli, stack):
    code, err = cli("backfill", "--shards", "1", "--from", stack.cursors(0)[0])
    assert code == 2
    assert "is not in shard 1's retained range" in err


def test_backfill_cursor_with_several_shards_rejected(cli, stack):
    code, err = cli("backfill", "--from", stack.cursors(0)[0])
    assert code == 2
    assert "a cursor belongs to one shard, but all shards are selected: add --shards" in err


@pytest.mark.parametrize(("args", "needle"), [
    (("--job-id", "Bad/Id"), "--job-id 'Bad/Id': use 1-63 lowercase letters"),
    (("--parameter", '{"nope": "x"}'), "event field 'parameter' has unknown key(s) nope"),
    (("--parameter", "[1]"), "--parameter must be a JSON object"),
    (("--processes", "0"), "argument --processes: 0 is out of range 1..256"),
    (("--groups-per-event", "x"), "argument --groups-per-event: 'x' is not a whole number"),
])
def test_backfill_bad_options_rejected(cli, args, needle):
    code, err = cli("backfill", *args)
    assert code == 2
    assert needle in err


@pytest.mark.parametrize(("args", "needle"), [
    (("--interval", "2"), "argument --interval: 2 is out of range 3..600"),
    (("--interval", "601"), "argument --interval: 601 is out of range 3..600"),
    (("--max-retry", "101"), "argument --max-retry: 101 is out of range 0..100"),
    (("--start", "MTUyOTQ4MDIwOTY1NTk3ODQ2Mw=="), "--start 'MTUyOTQ4MDIwOTY1NTk3ODQ2Mw==' is not unix seconds"),
    (("--start", "2024-05-01"), "--start '2024-05-01' has no UTC offset"),
    (("--once", "--iterations", "2"), "not allowed with argument"),
])
def test_run_bad_options_rejected(cli, args, needle):
    code, err = cli("run", *args)
    assert code == 2
    assert needle in err


def test_run_interval_from_environment_checked_too(cli, monkeypatch):
    monkeypatch.setenv("TRIGGER_INTERVAL", "1")
    code, err = cli("run", "--once")
    assert code == 2
    assert "argument --interval: 1 is out of range 3..600" in err


def test_run_without_credentials_rejected(cli, monkeypatch):
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID")
    code, err = cli("run", "--once")
    assert code == 2
    assert "no SLS credentials" in err


def test_missing_logstore_rejected(cli, monkeypatch):
    monkeypatch.delenv("SLS_LOGSTORE")
    code, err = cli("lag")
    assert code == 2
    assert "the following arguments are required: --logstore" in err


def test_unknown_project_rejected_with_sls_error(cli):
    code, err = cli("lag", "--project", "no-such-project")
    assert code == 2
    assert "sls-kafka lag: error: SLS ProjectNotExist (HTTP 404) on ListShards for no-such-project/driving" in err
    assert "check the project name and the endpoint (region)" in err


def test_invoke_unreadable_event_file_rejected(cli, tmp_path):
    code, err = cli("invoke", "--event", str(tmp_path / "missing.json"))
    assert code == 2
    assert f"cannot read event file {tmp_path / 'missing.json'}" in err


def test_invoke_event_file_not_an_event_rejected(cli, tmp_path):
    path = tmp_path / "event.json"
    path.write_text('{"source": {"endpoint": "x"}}')
    code, err = cli("invoke", "--event", str(path))
    assert code == 2
    assert "event field 'source.beginCursor' is missing" in err
