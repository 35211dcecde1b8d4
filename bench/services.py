"""The benchmark's services: the SLS emulator in a child process, and a Kafka broker (own or given).

The emulator runs in its own process so that its CPU (serving pulls, lz4) is not counted against the method
being measured; the broker is a JVM on the same machine. Their CPU seconds during each method are recorded
too, since on two cores they compete with the method for the second core.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer

from devstack.kafka import KafkaBroker, create_topics, free_port, wait_for_broker

REPO = Path(__file__).resolve().parents[1]
# Any host name works through the emulator's proxy; `.emulator` fails fast in DNS if the proxy is missing.
SLS_ENDPOINT = "cn-hangzhou.log.emulator"
ACCESS_KEY_ID, ACCESS_KEY_SECRET = "bench", "bench-secret"
WARM_UP_RECORDS = 300_000


@dataclass(frozen=True)
class Service:
    address: str
    pid: int | None  # None: not started by us (an external broker), so its CPU is not measured

    def cpu_seconds(self) -> float | None:
        if self.pid is None:
            return None
        with open(f"/proc/{self.pid}/stat") as stat:
            # Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Services:
    kafka: Service
    sls: Service

    @property
    def bootstrap(self) -> str:
        return self.kafka.address

    def child_env(self) -> dict[str, str]:
        """Environment for a process that talks to both: the SDK reaches the emulator through HTTP_PROXY."""
        proxy = self.sls.address
        env = dict(os.environ)
        env.update({"HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "localhost,127.0.0.1,::1",
                    "no_proxy": "localhost,127.0.0.1,::1", "PYTHONPATH": str(REPO)})
        return env

    def cpu_seconds(self) -> dict[str, float | None]:
        return {"kafka": self.kafka.cpu_seconds(), "sls_emulator": self.sls.cpu_seconds()}


@contextlib.contextmanager
def emulator() -> Iterator[Service]:
    """Run `python -m devstack.sls_emulator` on a free port; yields its proxy URL and pid."""
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
        yield Service(first.rsplit(" ", 1)[-1].strip(), proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def kafka(bootstrap: str | None) -> Iterator[Service]:
    """Use the broker at `bootstrap`, or start one in a temporary directory for the run."""
    if bootstrap:
        wait_for_broker(bootstrap, timeout=30)
        yield Service(bootstrap, None)
        return
    with tempfile.TemporaryDirectory(prefix="sls-kafka-bench-") as tmp:
        broker = KafkaBroker(Path(tmp), port=free_port(), heap="1g")
        broker.start()
        try:
            assert broker.process is not None
            yield Service(broker.bootstrap, broker.process.pid)
        finally:
            broker.stop()


def make_topic(bootstrap: str, name: str, partitions: int) -> str:
    create_topics(bootstrap, [name], partitions=partitions)
    return name


def warm_up(bootstrap: str, records: int = WARM_UP_RECORDS) -> None:
    """Load the broker's producer-id and transaction coordinators and let its JVM compile the produce path.

    A fresh broker answers the first idempotent producer with "coordinator load in progress" for seconds and
    runs interpreted code for a while: without this, whichever method runs first pays for it.
    """
    topic = make_topic(bootstrap, f"bench-warm-up-{uuid.uuid4().hex[:8]}", 4)
    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 20,
            "compression.type": "lz4"}
    producer = Producer(conf)
    headers = [("sls.project", b"bench"), ("sls.shard", b"0")]
    for i in range(records):
        value = b'{"speed":%d,"carID":%d}' % (i % 181, 1000 + i % 9000)
        while True:
            try:
                producer.produce(topic, value, str(i % 9000).encode(), headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        msg = "broker warm-up: records left unconfirmed"
        raise RuntimeError(msg)
    txn = Producer({**conf, "transactional.id": f"bench-warm-up-{uuid.uuid4().hex[:8]}"})
    txn.init_transactions(60)
    txn.begin_transaction()
    txn.produce(topic, b"{}")
    txn.commit_transaction(60)
