"""A logstore in the emulator wired to fresh Kafka topics, for tests of the run, backfill, lag and invoke commands.

`Stack.cli(...)` runs `python -m processor ...` as a subprocess with the processor's environment (so signals and
exit codes are real); `Stack.env` also works in-process. Records carry a unique `seq`, so the multiset of values
read back from Kafka shows every loss and every duplicate.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aliyun.log import LogClient

from tests.kafka_helpers import read_all
from tests.pipeline_support import chunks, driving_record, json_contents, put_groups
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    client: LogClient
    endpoint: str
    project: str
    logstore: str
    bootstrap: str
    topic: str
    dlq: str
    checkpoints: Path
    written: list[bytes] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)  # more processor variables, e.g. SLS_PULL_COUNT
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    @property
    def variables(self) -> dict[str, str]:
        """What the commands read: the processor's configuration, SLS credentials and the CLI's SLS_* defaults."""
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_TOPIC": self.topic, "KAFKA_DLQ_TOPIC": self.dlq,
                "CHECKPOINT_DIR": str(self.checkpoints), "PROJECTION_FIELDS": "speed:number,carID:int,seq:int",
                "ALIBABA_CLOUD_ACCESS_KEY_ID": SLS_ACCESS_KEY_ID,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SLS_ACCESS_KEY_SECRET,
                "SLS_ENDPOINT": self.endpoint, "SLS_PROJECT": self.project, "SLS_LOGSTORE": self.logstore,
                "INVOCATION_TIMEOUT_SECONDS": "120", **self.extra}

    @property
    def env(self) -> dict[str, str]:
        """For subprocesses: this environment (with the emulator's proxy) plus `variables`."""
        return {**os.environ, **self.variables, "PYTHONPATH": str(REPO)}

    def write(self, records: int, per_group: int = 50) -> list[bytes]:
        """Append `records` driving records (groups spread round robin over the shards); returns their values."""
        first = len(self.written)
        batch = [driving_record(first + i, self.rng) for i in range(records)]
        put_groups(self.client, self.project, self.logstore, (json_contents(c) for c in chunks(batch, per_group)))
        values = [orjson.dumps({"speed": r["speed"], "carID": r["carID"], "seq": r["seq"]}) for r in batch]
        self.written.extend(values)
        return values

    def delivered(self) -> Counter[bytes]:
        return Counter(r.value for r in read_all(self.bootstrap, self.topic, timeout=120))

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "processor", *args], env=self.env, capture_output=True,
                              input=stdin, text=True, timeout=timeout, check=False, cwd=REPO)

    def popen(self, *args: str, stdout: Any = subprocess.PIPE) -> subprocess.Popen[str]:
        # Its own session, so a signal to its process group reaches backfill's worker processes too.
        return subprocess.Popen([sys.executable, "-m", "processor", *args], env=self.env, stdout=stdout,
                                stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True)

    def cursors(self, shard: int) -> tuple[str, str]:
        begin = self.client.get_begin_cursor(self.project, self.logstore, shard).get_cursor()
        end = self.client.get_end_cursor(self.project, self.logstore, shard).get_cursor()
        return begin, end


def make_stack(client: LogClient, endpoint: str, project: str, bootstrap: str, topic: str, dlq: str,
               checkpoints: Path, shards: int = 2) -> Stack:
    client.create_logstore(project, "driving", ttl=7, shard_count=shards)
    return Stack(client, endpoint, project, "driving", bootstrap, topic, dlq, checkpoints)


def checkpoint_files(stack: Stack, scope_dir: str) -> Iterator[Path]:
    """The file store's checkpoints of one scope (`_trigger` is the function's own, scope "")."""
    return (stack.checkpoints / stack.project / stack.logstore / scope_dir).glob("shard-*.json")


def stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM, group: bool = False) -> None:
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)


@pytest.fixture(name="stack")
def stack_fixture(sls_client, sls_proxy_env, sls_project, kafka, topic_factory, tmp_path) -> Stack:
    """A two-shard logstore `driving` in a fresh project, a 3-partition topic and its DLQ, a checkpoint dir."""
    return make_stack(sls_client, sls_proxy_env, sls_project, kafka.bootstrap, topic_factory(partitions=3),
                      topic_factory(), tmp_path / "checkpoints")
