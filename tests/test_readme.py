"""The README stays true: every configuration variable documented, quick start and CI run the same tests."""

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from devstack.fc.spec import load
from devstack.kafka import free_port
from devstack.kafka.jars import cache_root
from processor.cli import build_parser, main
from processor.variables import VARIABLES
from tests.devstack.fc.fc_support import repo_env

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_documents_every_configuration_variable():
    table = {m[1] for m in re.finditer(r"^\| `([A-Z_]+)`", README, re.MULTILINE)}
    assert table == {v.name for v in VARIABLES}


def test_quick_start_is_two_commands_and_ci_runs_the_same_tests():
    quick = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["python3 -m pip install -e '.[dev]' && sls-kafka demo", "python3 -m pytest"]
    # A new user learns what the test command costs, and the cheap way, before running it.
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "about 25 min on 2 cores" in quick.strip().splitlines()[1]
    assert '`python3 -m pytest -m "not slow"` runs the fast tier alone (about 20 s' in quick_start
    development = README.split("\n## Development", 1)[1]
    assert "(about 25 min on 2 cores)" in development
    assert 'python3 -m pytest -m "not slow"   # the fast tier' in development
    assert "python3 -m pytest" in (ROOT / ".ci" / "run").read_text()


def test_readme_mentions_every_command():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert f"sls-kafka {name}" in README, name


def test_readme_and_invoke_help_show_the_same_trigger_event_and_it_parses():
    from processor.commands.invoke import EVENT_EXAMPLE
    from processor.event import TriggerEvent

    assert "\n".join("  " + line for line in EVENT_EXAMPLE.splitlines()) in README
    assert TriggerEvent.from_json(EVENT_EXAMPLE).shard == 0


# ------------------------------------------------------------------------------------- the walk-through


def walkthrough_commands() -> list[str]:
    """Every command of the Commands section's bash blocks, in order, without its comment."""
    section = README.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL):
        for line in block.splitlines():
            command = re.sub(r"\s+#\s.*$", "", line.strip())
            if command:
                commands.append(command)
    return commands


def _count(pattern: str, text: str) -> int:
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"{pattern!r} not in:\n{text}"
    return int(found[1])


@pytest.mark.slow
def test_readme_walkthrough_runs_every_command_as_shown(tmp_path):
    """The Commands section's examples, run in their order on a fresh `dev up` stack, each output checked.

    Two liberties, for a machine others share: the stack's ports are free ones instead of 9092 and 8090 (each
    command's text is otherwise run as written, by bash), and `run --interval 5` gets the Ctrl-C the comment
    promises once its first round is logged.
    """
    kafka_port, sls_port = free_port(), free_port()
    cache = tmp_path / "cache" / "sls-kafka-processor"
    cache.mkdir(parents=True)
    for jars in cache_root().glob("kafka-*"):  # the broker's jars, so nothing is downloaded
        (cache / jars.name).symlink_to(jars)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "SLS_", "CHECKPOINT_", "ALIBABA_", "PROJECTION_", "DELIVERY_", "LOG_"))
           and k.lower() not in ("http_proxy", "https_proxy")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_STATE_HOME=str(tmp_path / "state"), PYTHONPATH=str(ROOT),
               PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    prelude = f'sls-kafka() {{ {sys.executable} -m processor "$@"; }}; export -f sls-kafka; cd {tmp_path}; '

    def local(command: str) -> str:
        command = command.replace("127.0.0.1:9092", f"127.0.0.1:{kafka_port}")
        command = command.replace("127.0.0.1:8090", f"127.0.0.1:{sls_port}")
        return command.replace("sls-kafka dev up", f"sls-kafka dev up --kafka-port {kafka_port} --sls-port {sls_port}")

    def bash(command: str) -> subprocess.Popen[str]:
        # A session of its own: Ctrl-C reaches the whole process group, as on a terminal.
        return subprocess.Popen(["bash", "-c", prelude + local(command)], env=env, cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)

    def shell(command: str) -> str:
        proc = bash(command)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{command}\n{out}\n{err}"
        return out

    seen: list[str] = []
    running: subprocess.Popen[str] | None = None
    try:
        for command in walkthrough_commands():
            seen.append(command)
            if command.startswith("export "):
                env.update(var.split("=", 1) for var in shlex.split(local(command))[1:])
            elif command == "sls-kafka run --interval 5 --start begin":
                proc = running = bash(command)
                lines = []
                for line in proc.stderr:
                    lines.append(line)
                    if " round 1:" in line or "Traceback" in line:
                        break
                os.killpg(proc.pid, signal.SIGINT)
                out, err = proc.communicate(timeout=120)
                assert proc.returncode == 0, "".join(lines) + err
                assert re.fullmatch(r"sls-kafka run: \d+ round\(s\), \d+ invocation\(s\): 10002 delivered, "
                                    r"4 dead-lettered, 0 failed \(after retries\)\n", out), out
            else:
                CHECKS[command](shell(command), tmp_path)
    finally:
        if running is not None and running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)
        subprocess.run(["bash", "-c", prelude + "sls-kafka dev down"], env=env, cwd=ROOT, capture_output=True,
                       timeout=120, check=False)
    assert seen == walkthrough_commands()


def _dev_up(out: str, _dir: Path) -> None:
    assert re.search(r"^kafka: started", out, re.MULTILINE), out
    assert re.search(r"^sls: started", out, re.MULTILINE), out


def _dev_seed(out: str, _dir: Path) -> None:
    assert re.fullmatch(r"wrote 10006 logs \(4 poison\) to demo/driving at cn-hangzhou\.log\.emulator "
                        r"\(HTTP_PROXY=http://127\.0\.0\.1:\d+\)\n", out), out


def _run_once(out: str, _dir: Path) -> None:
    assert out == "sls-kafka run: 1 round(s), 0 invocation(s): 0 delivered, 0 dead-lettered, 0 failed (after retries)\n"


def _event(_out: str, directory: Path) -> None:
    event = orjson.loads((directory / "event.json").read_bytes())
    assert event["source"]["shardId"] == 0
    assert event["source"]["projectName"] == "demo"


def _invoke_delivered(out: str, _dir: Path) -> None:
    assert orjson.loads(out)["already_delivered"] is True


def _invoke_scratch(out: str, _dir: Path) -> None:
    summary = orjson.loads(out)
    assert summary["produced"] > 0
    assert summary["checkpoint_scope"].startswith("invoke-")


def _backfill(out: str, _dir: Path) -> None:
    assert re.fullmatch(r"backfill job bf-[0-9a-f]+ complete: (\d+)/\1 log groups of 4 shard\(s\) in [\d.]+s; "
                        r"10006 records read, 10002 produced, 4 dead-lettered \(\d+ records/s, 2 worker "
                        r"process\(es\)\)\.\n", out), out


def _backfill_before_the_data(out: str, _dir: Path) -> None:
    assert re.fullmatch(r"backfill job bf-[0-9a-f]+ complete: 0/0 log groups of 2 shard\(s\) in [\d.]+s; "
                        r"0 records read, 0 produced, 0 dead-lettered .*\n", out), out


def _dry_run_head(out: str, _dir: Path) -> None:
    lines = out.splitlines()
    assert len(lines) == 10
    assert all(set(orjson.loads(line)) >= {"speed", "carID"} for line in lines), lines


def _dlq_show(out: str, _dir: Path) -> None:
    matching = _count(r"^== vehicles\.dlq: (\d+) dead letter\(s\) matching$", out)
    assert matching >= 2
    assert out.endswith(f"== by reason:\n{matching:>7}  required field 'carID' is missing\n"), out
    listed = re.findall(r"^(\S+Z)  partition \d+ offset \d+  shard \d+ cursor \S+ group \d+: required field 'carID' "
                        r"is missing\n   original: \{.*\"speed\\\": 40\}", out, re.MULTILINE)
    assert len(listed) == matching
    assert listed == sorted(listed)  # oldest first


def _dlq_replay(out: str, _dir: Path) -> None:
    read = _count(r"^sls-kafka dlq replay: (\d+) dead letter\(s\) read", out)
    delivered = _count(r"read: (\d+) delivered to vehicles", out)
    again = _count(r", (\d+) dead-lettered again", out)
    # Each delivery (run, scratch invoke, backfill) dead-lettered the four poison records; one of them lacks only
    # carID, which the new projection lets through.
    assert read % 4 == 0
    assert (delivered, again) == (read // 4, read // 4 * 3)


CHECKS = {
    "sls-kafka dev up": _dev_up,
    "sls-kafka dev seed --records 10000": _dev_seed,
    "python3 -c \"from devstack.kafka import create_topics; create_topics('127.0.0.1:9092', ['vehicles', "
    "'vehicles.dlq'], partitions=4)\"": lambda out, _dir: None,
    "sls-kafka run --once --start begin": _run_once,
    "sls-kafka event --shard 0 > event.json": _event,
    "sls-kafka invoke --event event.json": _invoke_delivered,
    "sls-kafka event --shard 0 | sls-kafka invoke --event - --scratch": _invoke_scratch,
    "sls-kafka backfill --from begin --to end --shards all --processes 2": _backfill,
    "sls-kafka backfill --from 2026-11-26T00:00:00+08:00 --to 2026-11-26T06:00:00+08:00 --shards 0,1":
        _backfill_before_the_data,
    "sls-kafka backfill --from begin --to end --dry-run | head": _dry_run_head,
    "sls-kafka dlq show --reason missing --limit 5": _dlq_show,
    "sls-kafka dlq replay": _dlq_replay,
}


def test_readme_plan_examples_run_and_print_a_plan(capsys):
    section = README.split("\n### Choosing the poll interval", 1)[1].split("\n### ", 1)[0]
    commands = [re.sub(r"\s+#\s.*$", "", line).strip()
                for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL) for line in block.splitlines()]
    assert len(commands) == 3
    for command in commands:
        argv = shlex.split(command)
        assert argv[:2] == ["sls-kafka", "plan"]
        assert main(argv[1:]) == 0, command
        out = capsys.readouterr().out
        assert re.search(r"^  vars\.triggerInterval: \d+$", out, re.MULTILINE), out
        assert re.search(r"^  vars\.timeout: \d+ ", out, re.MULTILINE), out


def test_the_demo_description_states_s_demo_yamls_cadences():
    env = {**repo_env("127.0.0.1:1", "t", "p", "l", "tl"), "SMTP_PORT": "1", "SMTP_CA_FILE": "", "DEMO_CODE_ZIP": ""}
    processor, evaluator = load(ROOT / "s.demo.yaml", env, "1")
    quick_start = " ".join(README.split("## Quick start", 1)[1].split("\n## ", 1)[0].split())
    assert (f"`s.yaml` itself (`extend: s.yaml`) with a {processor.triggers[0].interval:g} s trigger interval, the "
            f"evaluator ticking every {evaluator.timers[0].every:g} s") in quick_start
    assert f"rules (`{processor.env['ALERT_RULES']}`: cars over 120 km/h" in quick_start
