"""Cold start: import `processor.handler` and run `initialize` in a fresh interpreter, as an FC instance does.

Measured inside the child (from before the import to after `initialize`), plus the child's whole life as seen
from outside (interpreter start and exit included). Runs with the bytecode cache warm, and with an empty one
(a fresh PYTHONPYCACHEPREFIX: every module compiled from source, the worst case for a package without .pyc).
One more warm run under `-X importtime` says where the import goes: each module's own time, summed by top-level
package (the standard library's together).

With an event, each run then invokes the handler once on it (a small range, into a checkpoint directory of its
own): the first invocation imports what `initialize` did not need (the SLS SDK, the delivery loop), so its
latency shows what the start left for later.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

_SNIPPET = """
import json, os, time
t0 = time.perf_counter()
import processor.handler as handler
t1 = time.perf_counter()
handler.initialize(None)
t2 = time.perf_counter()
times = {"import_ms": (t1 - t0) * 1000, "initialize_ms": (t2 - t1) * 1000}
if os.environ.get("BENCH_COLD_EVENT"):
    handler.handler(os.environ["BENCH_COLD_EVENT"], None)
    times["first_invocation_ms"] = (time.perf_counter() - t2) * 1000
print(json.dumps(times))
"""


def _once(env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-cold-checkpoints-") as checkpoints:
        out = subprocess.run([sys.executable, "-c", _SNIPPET], env={**env, "CHECKPOINT_DIR": checkpoints},
                             capture_output=True, text=True, check=True)
    inside = json.loads(out.stdout.strip().splitlines()[-1])
    return {**inside, "total_ms": inside["import_ms"] + inside["initialize_ms"],
            "process_ms": (time.perf_counter() - started) * 1000}


def import_breakdown(env: dict[str, str]) -> dict[str, float]:
    """Milliseconds of `import processor.handler` per top-level package (self times summed), largest first."""
    at_start = {name for name, _ in _import_times(env, "pass")}  # site and what it loads come before t0
    spent: dict[str, float] = {}
    for name, ms in _import_times(env, "import processor.handler"):
        if name in at_start:
            continue
        top = name.split(".")[0]
        group = "(standard library)" if top in sys.stdlib_module_names or top.startswith("_") else top
        spent[group] = spent.get(group, 0.0) + ms
    return {k: round(v, 1) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}


def _import_times(env: dict[str, str], code: str) -> list[tuple[str, float]]:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    times = []
    for line in out.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():  # not the header, nor anything else printed
            times.append((parts[2].strip(), int(parts[0]) / 1000))
    return times


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0]}


def measure(env: dict[str, str], runs: int = 7, event: str | None = None) -> dict[str, Any]:
    """Medians over `runs` fresh interpreters (after one warm-up), and over a few with no bytecode cache; with
    `event`, each also times a first invocation on it."""
    if event is not None:
        env = {**env, "BENCH_COLD_EVENT": event}
    # Bytecode in a cache of its own, written by the warm-up: an environment with PYTHONDONTWRITEBYTECODE would
    # otherwise measure the project's modules compiled from source at every "warm" start.
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
        env["PYTHONPYCACHEPREFIX"] = cache
        _once(env)  # writes the .pyc files a warm measurement relies on
        warm = [_once(env) for _ in range(runs)]
        breakdown = import_breakdown(env)
    cold = []
    for _ in range(max(1, runs // 3)):
        with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
            cold.append(_once({**env, "PYTHONPYCACHEPREFIX": cache}))
    return {"runs": runs, "warm_bytecode": _medians(warm), "no_bytecode_cache": _medians(cold),
            "import_ms_by_package": breakdown}
