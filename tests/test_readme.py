"""The README stays true: every configuration variable documented, quick start and CI run the same tests."""

import re
from pathlib import Path

from processor.cli import build_parser
from processor.variables import VARIABLES

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_documents_every_configuration_variable():
    table = {m[1] for m in re.finditer(r"^\| `([A-Z_]+)`", README, re.MULTILINE)}
    assert table == {v.name for v in VARIABLES}


def test_quick_start_is_two_commands_and_ci_runs_the_same_tests():
    quick = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["python3 -m pip install -e '.[dev]' && sls-kafka demo", "python3 -m pytest"]
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
