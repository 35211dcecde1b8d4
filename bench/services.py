"""The benchmark's services: the SLS emulator in a child process, and a Kafka broker (own or given).

The emulator runs in its own process so that its CPU (serving pulls, lz4) is not counted against the method
being measured; the broker is a JVM on the same machine.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devstack.kafka import KafkaBroker, create_topics, free_port, wait_for_broker

REPO = Path(__file__).resolve().parents[1]
# Any host name works through the emulator's proxy; `.emulator` fails fast in DNS if the proxy is missing.
SLS_ENDPOINT = "cn-hangzhou.log.emulator"
ACCESS_KEY_ID, ACCESS_KEY_SECRET = "bench", "bench-secret"


@dataclass(frozen=True)
class Services:
    bootstrap: str
    proxy_url: str

    def child_env(self) -> dict[str, str]:
        """Environment for a process that talks to both: the SDK reaches the emulator through HTTP_PROXY."""
        env = dict(os.environ)
        env.update({"HTTP_PROXY": self.proxy_url, "http_proxy": self.proxy_url,
                    "NO_PROXY": "localhost,127.0.0.1,::1", "no_proxy": "localhost,127.0.0.1,::1",
                    "PYTHONPATH": str(REPO)})
        return env


@contextlib.contextmanager
def emulator() -> Iterator[str]:
    """Run `python -m devstack.sls_emulator` on a free port; yields its proxy URL."""
    proc = subprocess.Popen([sys.executable, "-m", "devstack.sls_emulator", "--port", "0"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "SLS emulator listening on http://127.0.0.1:<port>"
        if "listening on" not in first:
            msg = f"the SLS emulator did not start: {first!r}"
            raise RuntimeError(msg)
        # Keep reading what it prints, so a full pipe can never stall it.
        threading.Thread(target=proc.stdout.read, name="emulator-stdout", daemon=True).start()
        yield first.rsplit(" ", 1)[-1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def kafka(bootstrap: str | None) -> Iterator[str]:
    """Use the broker at `bootstrap`, or start one in a temporary directory for the run."""
    if bootstrap:
        wait_for_broker(bootstrap, timeout=30)
        yield bootstrap
        return
    with tempfile.TemporaryDirectory(prefix="sls-kafka-bench-") as tmp:
        broker = KafkaBroker(Path(tmp), port=free_port(), heap="1g")
        broker.start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop()


def make_topic(bootstrap: str, name: str, partitions: int) -> str:
    create_topics(bootstrap, [name], partitions=partitions)
    return name
