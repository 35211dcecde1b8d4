"""The local dev stack: a Kafka broker, the SLS emulator and an SMTP server as detached processes that outlive
`dev up`.

What runs is recorded in ``<state_dir>/state.json`` (PID, process start time, port, a command-line
marker), so `dev down` signals exactly the processes `dev up` started, and nothing that merely reused
their PIDs.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from devstack.kafka import KafkaBroker
from devstack.kafka.broker import MAIN_CLASS, port_accepts
from devstack.kafka.jars import cache_root
from devstack.processes import ProcessRef
from devstack.smtp import INFO_NAME

KAFKA = "kafka"
SLS = "sls"
SMTP = "smtp"
SERVICES = (KAFKA, SLS, SMTP)
EMULATOR_MODULE = "devstack.sls_emulator"
SMTP_MODULE = "devstack.smtp"
KAFKA_START_TIMEOUT_S = 120.0
CHILD_START_TIMEOUT_S = 30.0


class StackError(RuntimeError):
    """A service of the dev stack could not be started or stopped."""


def default_state_dir() -> Path:
    """Where `dev` keeps its state and the services' data unless told otherwise."""
    return cache_root() / "dev"


@dataclass(frozen=True)
class Service:
    """One process of the stack as recorded in the state file."""

    name: str
    pid: int
    start_ticks: int
    port: int
    cmdline_marker: str
    log: str

    @property
    def process(self) -> ProcessRef:
        """The recorded process (it may have exited since)."""
        return ProcessRef(self.pid, self.start_ticks)

    def is_running(self) -> bool:
        """Tell whether the recorded process is still this service."""
        return self.process.is_running(self.cmdline_marker)


@dataclass(frozen=True)
class UpResult:
    """A service after `dev up`, and whether this call started it."""

    service: Service
    started: bool


def up(state_dir: Path, kafka_port: int = 9092, sls_port: int = 8090, smtp_port: int = 2525,
       smtp_tls_port: int = 2465) -> list[UpResult]:
    """Start whichever of Kafka, the SLS emulator and the SMTP server is not running yet; wait until all answer.

    A service already running keeps its port, even if another one is asked for. If one fails to start,
    those started by this call are stopped again before ``StackError`` is raised.
    """
    with _locked(state_dir):
        services = _load(state_dir)
        ports = {KAFKA: [("kafka", kafka_port)], SLS: [("sls", sls_port)],
                 SMTP: [("smtp", smtp_port), ("smtp-tls", smtp_tls_port)]}
        running = {name for name, svc in services.items() if svc.is_running()}
        # Checked up front so that a taken SLS port does not cost a broker start and stop.
        for name in set(SERVICES) - running:
            for option, port in ports[name]:
                if port_accepts(port):
                    msg = f"port {port} is already in use on 127.0.0.1; pass another --{option}-port"
                    raise StackError(msg)
        results: list[UpResult] = []
        try:
            for name, start in ((KAFKA, _start_kafka), (SLS, _start_emulator), (SMTP, _start_smtp)):
                if name in running:
                    results.append(UpResult(services[name], started=False))
                    continue
                services[name] = start(state_dir, *(port for _, port in ports[name]))
                _save(state_dir, services)
                results.append(UpResult(services[name], started=True))
        except BaseException:
            for result in results:
                if result.started:
                    result.service.process.stop()
                    services.pop(result.service.name, None)
            _save(state_dir, services)
            raise
        return results


def down(state_dir: Path) -> list[tuple[Service, bool]]:
    """Stop the recorded services (SIGTERM, then SIGKILL after 20 s); returns each with was-running."""
    with _locked(state_dir):
        stopped = []
        for service in _load(state_dir).values():
            running = service.is_running()
            if running:
                service.process.stop(grace=20.0)
            stopped.append((service, running))
        (state_dir / "state.json").unlink(missing_ok=True)
        return stopped


def status(state_dir: Path) -> dict[str, Service | None]:
    """Each service mapped to its record when it runs, or None."""
    running = {name: svc for name, svc in _load(state_dir).items() if svc.is_running()}
    return {name: running.get(name) for name in SERVICES}


def _start_kafka(state_dir: Path, port: int) -> Service:
    broker = KafkaBroker(state_dir / KAFKA, port=port)
    try:
        broker.start(timeout=KAFKA_START_TIMEOUT_S)
    except RuntimeError as exc:
        msg = f"Kafka did not start: {exc}"
        raise StackError(msg) from exc
    proc = broker.process
    if proc is None:
        msg = f"Kafka exited right after starting; see {broker.log_path}"
        raise StackError(msg)
    marker = f"{MAIN_CLASS} {broker.properties_path}"
    return Service(KAFKA, proc.pid, proc.start_ticks, port, marker, str(broker.log_path))


def _start_emulator(state_dir: Path, port: int) -> Service:
    data_dir = state_dir / SLS
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "emulator.log"
    args = ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    ref = _spawn(EMULATOR_MODULE, args, log_path, lambda: _http_answers(port), "the SLS emulator")
    marker = f"{EMULATOR_MODULE} {' '.join(args[:4])}"
    return Service(SLS, ref.pid, ref.start_ticks, port, marker, str(log_path))


def _start_smtp(state_dir: Path, port: int, tls_port: int) -> Service:
    smtp_dir = smtp_state_dir(state_dir)
    smtp_dir.mkdir(parents=True, exist_ok=True)
    info = smtp_dir / INFO_NAME
    info.unlink(missing_ok=True)  # the server writes it again once both listeners answer
    log_path = smtp_dir / "smtp.log"
    args = ["--dir", str(smtp_dir), "--port", str(port), "--tls-port", str(tls_port)]
    ref = _spawn(SMTP_MODULE, args, log_path, info.exists, "the SMTP server")
    marker = f"{SMTP_MODULE} {' '.join(args[:2])}"
    return Service(SMTP, ref.pid, ref.start_ticks, port, marker, str(log_path))


def _spawn(module: str, args: list[str], log_path: Path, ready: Callable[[], bool], what: str) -> ProcessRef:
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    ref = ProcessRef.of(proc.pid)
    deadline = time.monotonic() + CHILD_START_TIMEOUT_S
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            ref.kill()
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            why = f"exited with code {proc.returncode}" if proc.returncode is not None else "did not answer"
            msg = f"{what} {why} (within {CHILD_START_TIMEOUT_S:.0f}s); {log_path}:\n{tail}"
            raise StackError(msg)
        time.sleep(0.1)
    return ref


def smtp_state_dir(state_dir: Path) -> Path:
    """Where the SMTP server keeps its certificate, `server.json` (ports) and `mail/`."""
    return state_dir / SMTP


def _http_answers(port: int) -> bool:
    # No proxy: the user may have HTTP_PROXY pointing at this very emulator, or at something else.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(f"http://127.0.0.1:{port}/", timeout=1).close()
    except urllib.error.HTTPError:
        return True  # any HTTP answer, even the SLS-style 404, means it serves
    except OSError:
        return False
    return True


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    # Two `dev up` at once must not both start a broker.
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load(state_dir: Path) -> dict[str, Service]:
    path = state_dir / "state.json"
    try:
        raw = json.loads(path.read_text())
        return {name: Service(**fields) for name, fields in raw.items()}
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError) as exc:
        msg = f"{path} is not a dev stack state file ({exc}); remove it after stopping its processes"
        raise StackError(msg) from exc


def _save(state_dir: Path, services: dict[str, Service]) -> None:
    path = state_dir / "state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({name: asdict(svc) for name, svc in services.items()}, indent=2) + "\n")
    tmp.replace(path)
