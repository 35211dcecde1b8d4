"""`sls-kafka run` and `sls-kafka --version` as a user sees them: what is printed on exit."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from tests.pipeline_support import json_contents, put_groups
from tests.processor.commands_support import REPO, stack_fixture  # noqa: F401  (the `stack` fixture)


def test_version_is_the_installed_distributions():
    result = subprocess.run([sys.executable, "-m", "processor", "--version"], capture_output=True, text=True,
                            cwd=REPO, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sls-kafka {metadata.version('sls-kafka-processor')}"


def test_run_prints_its_totals_on_exit(stack):
    stack.write(300)
    poison = [{"speed": "fast", "carID": 1, "seq": 10_000}, {"speed": 3, "seq": 10_001}, {"speed": 4, "carID": 2}]
    good = [{"speed": 5, "carID": 3, "seq": 10_002}]
    put_groups(stack.client, stack.project, stack.logstore, [json_contents(poison + good)])
    done = stack.cli("run", "--once", "--start", "begin")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == ("sls-kafka run: 1 round(s), 2 invocation(s): 301 delivered, "
                                            "3 dead-lettered, 0 failed (after retries)")
