"""Function instances: separate processes of the runtime's Python, scaled out per function up to a limit.

As on FC: an instance serves at most `instanceConcurrency` invocations at once; a new one is started when all
are busy (up to `max_instances`, then callers wait); the initializer runs once per instance, bounded by its
own timeout; an invocation past the function's `timeout` has its instance killed, and every invocation still
running on it fails.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from devstack.fc.spec import FunctionSpec

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
DEFAULT_MAX_INSTANCES = 4
LogSink = Callable[[str], None]


@dataclass(frozen=True)
class Deployment:
    """A function ready to run: its spec, its unpacked code, the runtime's interpreter and what FC provides."""

    spec: FunctionSpec
    code_dir: Path
    python: Path
    credentials: Mapping[str, str]
    # What the local network needs (e.g. HTTP_PROXY to reach the SLS emulator); FC's own variables come on top.
    network_env: Mapping[str, str]

    def process_env(self, instance_id: str) -> dict[str, str]:
        spec, creds = self.spec, self.credentials
        return {**self.network_env, **spec.env, "FC_FUNCTION_NAME": spec.name, "FC_FUNCTION_HANDLER": spec.handler,
                "FC_FUNCTION_MEMORY_SIZE": str(spec.memory), "FC_REGION": spec.region,
                "FC_ACCOUNT_ID": spec.account_id, "FC_INSTANCE_ID": instance_id,
                "FC_FUNC_CODE_PATH": str(self.code_dir),
                "ALIBABA_CLOUD_ACCESS_KEY_ID": creds["access_key_id"],
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": creds["access_key_secret"],
                "ALIBABA_CLOUD_SECURITY_TOKEN": creds.get("security_token") or "",
                "PATH": "/usr/local/bin:/usr/bin:/bin"}

    def context(self, request_id: str) -> dict[str, Any]:
        spec = self.spec
        return {"request_id": request_id, "credentials": dict(self.credentials), "region": spec.region,
                "account_id": spec.account_id,
                "function": {"name": spec.name, "handler": spec.handler, "memory": spec.memory,
                             "timeout": spec.timeout},
                "service": {"name": spec.name, "log_project": "", "log_store": "", "qualifier": "LATEST",
                            "version_id": ""}}


@dataclass(frozen=True)
class Outcome:
    """What an invocation returned: the payload, or FC's error body (`errorMessage`, `errorType`, ...)."""

    request_id: str
    payload: bytes = b""
    error: dict[str, Any] | None = None
    instance_id: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


class InstanceDied(RuntimeError):
    pass


class Instance:
    def __init__(self, deployment: Deployment, log: LogSink) -> None:
        self.deployment = deployment
        self.id = "c-" + uuid.uuid4().hex[:12]
        self.active = 1  # reserved by whoever starts it
        # Only a started instance takes invocations: a request sent before the initializer's would be read as it.
        self.ready = False
        self._log = log
        self._pending: dict[str, Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._ready: Future[dict[str, Any]] = Future()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, probe: bool = False) -> None:
        """Start the process and wait for the initializer; raises `InstanceDied` with FC's error body."""
        spec = self.deployment.spec
        # -I: neither this project's directory (the bootstrap's) nor PYTHON* variables leak into the runtime.
        args = [str(self.deployment.python), "-I", str(BOOTSTRAP), str(self.deployment.code_dir), spec.handler]
        self.proc = subprocess.Popen([*args, *([spec.initializer] if spec.initializer else [])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.deployment.process_env(self.id), start_new_session=True)
        threading.Thread(target=self._read_answers, args=(self.proc.stdout,), daemon=True).start()
        threading.Thread(target=self._read_logs, args=(self.proc.stderr,), daemon=True).start()
        init_id = f"init-{self.id}"
        self._send({"probe": probe, "context": self.deployment.context(init_id)})
        try:
            ready = self._ready.result(timeout=spec.initializer_timeout + 30 if probe else spec.initializer_timeout)
        except FutureTimeout:
            self.kill()
            raise InstanceDied({"errorMessage": f"initializer {spec.initializer} timed out after "
                                                f"{spec.initializer_timeout:g}s",
                                "errorType": "InitializationTimeout"}) from None
        if ready.get("type") != "ready":
            self.kill()
            raise InstanceDied(ready.get("error") or {"errorMessage": "instance exited during start"})
        self.ready = True

    def invoke(self, request_id: str, event: bytes, timeout: float) -> Outcome:
        future: Future[dict[str, Any]] = Future()
        with self._lock:
            self._pending[request_id] = future
        try:
            self._send({"id": request_id, "event": base64.b64encode(event).decode(),
                        "context": self.deployment.context(request_id)})
            answer = future.result(timeout=timeout)
        except FutureTimeout:
            self._log(f"{stamp()} {request_id} [ERROR] Function timed out after {timeout:g} seconds: "
                      f"instance {self.id} killed")
            self.kill()
            return Outcome(request_id, error={"errorMessage": f"Function timed out after {timeout:g} seconds",
                                              "errorType": "FunctionTimeout"}, instance_id=self.id)
        except (InstanceDied, OSError) as exc:
            return Outcome(request_id, error={"errorMessage": f"instance {self.id} exited: {exc}",
                                              "errorType": "InstanceExited"}, instance_id=self.id)
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
        if answer["ok"]:
            return Outcome(request_id, base64.b64decode(answer["result"]), instance_id=self.id)
        return Outcome(request_id, error=answer["error"], instance_id=self.id)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()

    def _read_answers(self, stream: IO[bytes]) -> None:
        for line in stream:
            answer = json.loads(line)
            if "type" in answer:
                self._ready.set_result(answer)
                continue
            with self._lock:
                future = self._pending.get(answer["id"])
            if future is not None and not future.done():
                future.set_result(answer)
        # The process is gone: whatever still waits on it fails now rather than at its timeout.
        if not self._ready.done():
            self._ready.set_result({"type": "exited"})
        with self._lock:
            waiting = list(self._pending.values())
        for future in waiting:
            if not future.done():
                future.set_exception(InstanceDied(f"exit code {self.proc.wait() if self.proc else '?'}"))

    def _read_logs(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._log(line.decode(errors="replace").rstrip("\n"))


class FunctionPool:
    """The instances of one function."""

    def __init__(self, deployment: Deployment, log: LogSink, max_instances: int = DEFAULT_MAX_INSTANCES) -> None:
        self.deployment = deployment
        self.max_instances = max_instances
        self.instances: list[Instance] = []
        self.started = 0
        self._log = log
        self._cond = threading.Condition()

    def invoke(self, event: bytes, request_id: str | None = None) -> Outcome:
        request_id = request_id or str(uuid.uuid4())
        try:
            instance = self._acquire()
        except InstanceDied as exc:
            return Outcome(request_id, error=exc.args[0])
        try:
            return instance.invoke(request_id, event, self.deployment.spec.timeout)
        finally:
            with self._cond:
                instance.active -= 1
                if not instance.alive:
                    self._drop(instance)
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            instances, self.instances = self.instances, []
        for instance in instances:
            instance.kill()

    def _acquire(self) -> Instance:
        concurrency = self.deployment.spec.instance_concurrency
        with self._cond:
            while True:
                # An instance that died while idle (crashed, or killed from outside) frees its place.
                for instance in [i for i in self.instances if i.proc is not None and not i.alive and not i.active]:
                    self._drop(instance)
                for instance in self.instances:
                    if instance.ready and instance.alive and instance.active < concurrency:
                        instance.active += 1
                        return instance
                if len(self.instances) < self.max_instances:
                    fresh = Instance(self.deployment, self._log)
                    self.instances.append(fresh)
                    self.started += 1
                    break
                self._cond.wait()
        try:
            fresh.start()
        except BaseException:
            with self._cond:
                self._drop(fresh)
                self._cond.notify_all()
            raise
        return fresh

    def _drop(self, instance: Instance) -> None:
        if instance in self.instances:
            self.instances.remove(instance)


def stamp() -> str:
    """Now, as FC's log lines show it."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
