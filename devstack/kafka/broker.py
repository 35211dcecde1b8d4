"""A single-node Kafka (KRaft, broker+controller) run as a child JVM from the cached Maven jars."""

from __future__ import annotations

import base64
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from devstack.kafka.jars import LOG4J_CONFIG, fetch_jars
from devstack.kafka.topics import wait_for_broker
from devstack.processes import ProcessRef

MAIN_CLASS = "kafka.Kafka"
_SASL_NAME = re.compile(r"^[A-Za-z0-9._@-]+$")

# Single node: internal topics can only have RF 1 / min.isr 1 (the defaults of 3/2 make
# init_transactions() and group commits hang), and one partition each keeps their first use fast.
_STATIC_PROPERTIES = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "inter.broker.listener.name": "PLAINTEXT",
    "controller.listener.names": "CONTROLLER",
    "num.partitions": "1",
    "auto.create.topics.enable": "false",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "num.network.threads": "2",
    "num.io.threads": "2",
    # The cleaner allocates this on the heap at start-up (default 128 MiB); it must stay on because the
    # internal topics are compacted.
    "log.cleaner.dedupe.buffer.size": "16777216",
    # A producer that dies mid-transaction blocks read_committed readers until it is aborted.
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "2000",
    # After a SIGKILL the restarted node waits out its old registration's session (default 9 s) before
    # it can register again; crash tests restart often. 5 s still rides out GC pauses on 2 cores.
    "broker.heartbeat.interval.ms": "1000",
    "broker.session.timeout.ms": "5000",
}



def new_cluster_id() -> str:
    """A KRaft cluster id (URL-safe base64 of a random UUID) that does not start with '-'.

    The storage tool's argument parser would take such an id for an option ("--cluster-id: expected one
    argument"): one start in 64 failed that way. Kafka's own `Uuid.randomUuid` skips those ids the same way.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id

class KafkaBrokerError(RuntimeError):
    """The broker could not be formatted or started."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int) -> bool:
    """Tell whether something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class KafkaBroker:
    """One Kafka node whose data lives in ``data_dir``; a stop followed by a start keeps the data.

    ``data_dir`` holds ``server.properties``, ``broker.log`` (the JVM's output), ``broker.pid`` and the
    log directory ``kafka-logs``. ``sasl_users`` adds a SASL_PLAINTEXT (PLAIN) listener on
    ``sasl_port`` that accepts those user/password pairs. ``overrides`` are extra server properties.
    The JVM runs in its own session, so it outlives the process that started it.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 9092,
        controller_port: int | None = None,
        heap: str = "512m",
        sasl_users: Mapping[str, str] | None = None,
        sasl_port: int | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        for user, password in (sasl_users or {}).items():
            if not (_SASL_NAME.match(user) and _SASL_NAME.match(password)):
                msg = f"SASL user {user!r}: names and passwords may only use letters, digits and ._@-"
                raise ValueError(msg)
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.controller_port = controller_port or free_port()
        self.heap = heap
        self.sasl_users = dict(sasl_users or {})
        self.sasl_port = (sasl_port or free_port()) if self.sasl_users else None
        self.overrides = dict(overrides or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._ref: ProcessRef | None = None

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` of the PLAINTEXT listener."""
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """``bootstrap.servers`` of the SASL_PLAINTEXT listener (only with ``sasl_users``)."""
        if self.sasl_port is None:
            msg = "this broker has no SASL listener: pass sasl_users={...}"
            raise AttributeError(msg)
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def log_path(self) -> Path:
        """The JVM's stdout and stderr."""
        return self.data_dir / "broker.log"

    @property
    def properties_path(self) -> Path:
        """The generated server.properties."""
        return self.data_dir / "server.properties"

    @property
    def process(self) -> ProcessRef | None:
        """The running JVM, or None when stopped."""
        return self._ref if self._ref and self._ref.is_running() else None

    def start(self, timeout: float = 90.0) -> None:
        """Format the storage if new, launch the JVM and wait until it serves metadata requests.

        Fetches the jars first if they are not cached yet (not counted in ``timeout``).

        Raises ``KafkaBrokerError`` with the tail of broker.log if the JVM exits or is not ready in time.
        """
        if self.process:
            msg = f"broker already running (pid {self.process.pid})"
            raise KafkaBrokerError(msg)
        for port in filter(None, (self.port, self.controller_port, self.sasl_port)):
            if port_accepts(port):
                msg = f"port {port} is already in use on 127.0.0.1; pick another one"
                raise KafkaBrokerError(msg)
        classpath = str(fetch_jars() / "*")  # java expands the '*' itself
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_properties()
        if not (self._log_dirs / "meta.properties").exists():
            self._format(classpath)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [*self._java(classpath, f"-Xmx{self.heap}"), MAIN_CLASS, str(self.properties_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._ref = ProcessRef.of(self._proc.pid)
        (self.data_dir / "broker.pid").write_text(f"{self._proc.pid}\n")
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def stop(self, grace: float = 20.0) -> None:
        """Shut down cleanly (SIGTERM), SIGKILL after ``grace`` seconds."""
        if self._ref:
            self._ref.stop(grace)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the JVM, as a crash would."""
        if self._ref:
            self._ref.kill()
        self._reap()

    def restart(self, timeout: float = 90.0) -> None:
        """Stop cleanly and start again on the same ports and data."""
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 60) -> str:
        """The error lines of broker.log, then its last lines, for error messages.

        The errors come first because a failing JVM may still print its long config dump after them.
        """
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no broker.log)"
        all_lines = text.splitlines()
        errors = [line for line in all_lines
                  if " ERROR " in line or " FATAL " in line or "Exception" in line or line.startswith("Caused by")]
        head = "errors:\n" + "\n".join(errors[:20]) + "\nlast lines:\n" if errors else ""
        return head + "\n".join(all_lines[-lines:])

    @property
    def _log_dirs(self) -> Path:
        return self.data_dir / "kafka-logs"

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        (self.data_dir / "broker.pid").unlink(missing_ok=True)

    def _java(self, classpath: str, *jvm_opts: str) -> list[str]:
        return [
            "java", *jvm_opts, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={self.data_dir}", "-cp", classpath,
        ]  # fmt: skip

    def _properties(self) -> dict[str, str]:
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
        props = dict(_STATIC_PROPERTIES)
        if self.sasl_users:
            listeners.append(f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}")
            protocols.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
            users = " ".join(f'user_{u}="{p}"' for u, p in self.sasl_users.items())
            props["sasl.enabled.mechanisms"] = "PLAIN"
            props["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
            )
        # The transaction coordinator sends WRITE_TXN_MARKERS to the advertised inter-broker
        # listener, so only client listeners are advertised, never the controller's.
        props["listeners"] = ",".join([*listeners, f"CONTROLLER://127.0.0.1:{self.controller_port}"])
        props["advertised.listeners"] = ",".join(listeners)
        props["listener.security.protocol.map"] = ",".join(protocols)
        props["controller.quorum.voters"] = f"1@127.0.0.1:{self.controller_port}"
        props["log.dirs"] = str(self._log_dirs)
        props.update(self.overrides)
        return props

    def _write_properties(self) -> None:
        body = "".join(f"{key}={value}\n" for key, value in self._properties().items())
        self.properties_path.write_text(body)

    def _format(self, classpath: str) -> None:
        cluster_id = new_cluster_id()
        # Static quorum (controller.quorum.voters): the tool refuses --standalone here.
        cmd = [
            *self._java(classpath, "-Xmx256m"), "kafka.tools.StorageTool", "format",
            "-t", cluster_id, "-c", str(self.properties_path),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        with self.log_path.open("a") as log:
            log.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            msg = f"formatting {self._log_dirs} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
            raise KafkaBrokerError(msg)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout

        def still_starting() -> None:
            if self._proc is not None and self._proc.poll() is not None:
                msg = (
                    f"the Kafka JVM exited with code {self._proc.returncode} while starting; "
                    f"{self.log_path}:\n{self.log_tail()}"
                )
                raise KafkaBrokerError(msg)
            if time.monotonic() > deadline:
                msg = f"Kafka was not ready within {timeout:.0f}s; {self.log_path}:\n{self.log_tail()}"
                raise KafkaBrokerError(msg)

        # Kafka opens the client port only once it is unfenced; waiting for it first spares
        # librdkafka's connection-refused noise.
        while not port_accepts(self.port):
            still_starting()
            time.sleep(0.1)
        try:
            wait_for_broker(self.bootstrap, max(1.0, deadline - time.monotonic()), still_starting=still_starting)
        except TimeoutError as exc:
            msg = f"{exc}; {self.log_path}:\n{self.log_tail()}"
            raise KafkaBrokerError(msg) from exc
