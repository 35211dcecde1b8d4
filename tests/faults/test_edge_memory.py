"""Memory at the edges: a range whose group sizes jump from tiny to the largest SLS allows.

SLS caps a log group at 5 MB. A run of tiny groups lets the page size grow to `SLS_PULL_COUNT`; when the big
groups come, the page size must fall back at once, so that what the invocation holds stays a few pages of
about 2 MB however large the groups are. The invocation runs in its own process, whose peak RSS (VmHWM) is read
when it ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson

from tests.kafka_helpers import read_all
from tests.pipeline_support import put_groups, shard_events
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET

REPO = Path(__file__).resolve().parents[2]

TINY_GROUPS = 1100
BIG_GROUPS = 40
LOGS_PER_BIG_GROUP = 4096
# About 1.2 KB per log: 4,096 of them make a group of about 5 MB uncompressed, SLS's largest.
PADDING = 1150
# The README's figure for any group sizes. Before pages were bounded in bytes this sequence peaked at 461 MB: the
# page after the tiny groups held all 40 big ones (200 MB uncompressed), which the SDK holds twice while
# decompressing. Now that response is refused on its headers and pulled again in pages of one big group: 113 MB.
PEAK_RSS_LIMIT_MB = 130

# Runs the CLI's `invoke`, then reports the process's peak RSS, which only the process itself can read.
_INVOKE_AND_REPORT_PEAK = """
import sys
from processor.cli import main
try:
    code = main(["invoke", "--event", sys.argv[1]])
finally:
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    sys.stderr.write("PEAK " + peak.split()[1] + "\\n")
sys.exit(code)
"""


def _record(i: int) -> dict[str, object]:
    return {"speed": i % 180, "carID": 10_000 + i % 997, "seq": i}


def test_tiny_groups_then_5mb_groups_peak_rss_stays_bounded(kafka, topic_factory, sls_client, sls_project,
                                                            sls_proxy_env, tmp_path):
    sls_client.create_logstore(sls_project, "driving", ttl=1, shard_count=1)
    expected: Counter[bytes] = Counter()
    seq = 0

    def groups(n_groups: int, per_group: int, padding: int):
        nonlocal seq
        pad = "x" * padding
        for _ in range(n_groups):
            contents = []
            for _ in range(per_group):
                r = _record(seq)
                seq += 1
                expected[orjson.dumps({"speed": r["speed"], "carID": r["carID"]})] += 1
                contents.append({"content": orjson.dumps({**r, "note": pad}).decode()})
            yield contents

    put_groups(sls_client, sls_project, "driving", groups(TINY_GROUPS, 1, 0))
    put_groups(sls_client, sls_project, "driving", groups(BIG_GROUPS, LOGS_PER_BIG_GROUP, PADDING))
    [event] = shard_events(sls_client, sls_proxy_env, sls_project, "driving")
    event_file = tmp_path / "event.json"
    event_file.write_bytes(event)
    topic = topic_factory(partitions=1)
    env = {
        **os.environ, "PYTHONPATH": str(REPO),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "KAFKA_TOPIC": topic, "KAFKA_DLQ_TOPIC": topic_factory(),
        "CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "INVOCATION_TIMEOUT_SECONDS": "120",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": SLS_ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SLS_ACCESS_KEY_SECRET,
    }

    proc = subprocess.run([sys.executable, "-c", _INVOKE_AND_REPORT_PEAK, str(event_file)], env=env, cwd=REPO,
                          capture_output=True, timeout=180, check=False)

    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, stderr[-3000:]
    peak_mb = int(next(line for line in stderr.splitlines() if line.startswith("PEAK ")).split()[1]) / 1024
    print(f"peak RSS {peak_mb:.0f} MB for {TINY_GROUPS} tiny groups then {BIG_GROUPS} groups of ~5 MB")
    summary = orjson.loads(proc.stdout)
    assert summary["log_groups"] == TINY_GROUPS + BIG_GROUPS
    assert Counter(r.value for r in read_all(kafka.bootstrap, topic)) == expected
    assert peak_mb <= PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB over {PEAK_RSS_LIMIT_MB} MB"
