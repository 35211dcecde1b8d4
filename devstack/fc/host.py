"""The local FC host: deployed functions, their instances, asynchronous invocations and their logs.

Logs: every line an instance writes carries its request id (`<time> <request id> [LEVEL] text`), so one file
per function is enough to show one invocation (`sls-kafka dev logs --request-id`). Asynchronous invocations
are queued and run with FC's async retry: `asyncInvokeConfig.maxAsyncRetryAttempts` retries (default 3) of a
failed attempt, with a growing pause between them.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devstack.fc.instances import DEFAULT_MAX_INSTANCES, Deployment, FunctionPool, Outcome, stamp

ASYNC_WORKERS = 32
TAIL_BYTES = 4096
# The bootstrap's last line of an invocation (devstack/fc/bootstrap.py).
END_MARK = "FC Invoke End RequestId:"
END_WAIT_S = 1.0


class FunctionNotFound(LookupError):
    pass


class LogBook:
    """Appends a function's log lines to its file, and keeps the lines of invocations someone waits to see."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._captures: dict[str, tuple[list[str], threading.Event]] = {}

    def write(self, line: str) -> None:
        parts = line.split(" ", 2)
        with self._lock, self.path.open("a") as out:
            out.write(line + "\n")
            if len(parts) > 1 and parts[1] in self._captures:
                lines, ended = self._captures[parts[1]]
                lines.append(line)
                if END_MARK in line:
                    ended.set()

    @contextlib.contextmanager
    def capture(self, request_id: str) -> Iterator[list[str]]:
        """Collect one invocation's lines. They come on the instance's stderr, the answer on another pipe: on
        leaving, wait (briefly: a killed instance writes no end) for the invocation's end line."""
        lines: list[str] = []
        ended = threading.Event()
        with self._lock:
            self._captures[request_id] = (lines, ended)
        try:
            yield lines
            ended.wait(END_WAIT_S)
        finally:
            with self._lock:
                self._captures.pop(request_id, None)


@dataclass
class AsyncStatus:
    request_id: str
    function: str
    attempts: int = 0
    state: str = "Enqueued"
    error: dict[str, object] | None = None


class FcHost:
    def __init__(self, log_dir: Path, max_instances: int = DEFAULT_MAX_INSTANCES, async_backoff: float = 1.0) -> None:
        self.log_dir = log_dir
        self.max_instances = max_instances
        self.async_backoff = async_backoff
        self.pools: dict[str, FunctionPool] = {}
        self.books: dict[str, LogBook] = {}
        self.async_status: dict[str, AsyncStatus] = {}
        self._lock = threading.Lock()
        self._async = ThreadPoolExecutor(ASYNC_WORKERS, thread_name_prefix="fc-async")
        self._closed = threading.Event()

    def deploy(self, deployment: Deployment) -> None:
        """(Re)deploy a function: new invocations get instances of the new code; the old ones are stopped."""
        name = deployment.spec.name
        book = LogBook(self.log_dir / f"{name}.log")
        pool = FunctionPool(deployment, book.write, self.max_instances)
        with self._lock:
            old, self.pools[name], self.books[name] = self.pools.get(name), pool, book
        if old is not None:
            old.close()

    def pool(self, name: str) -> FunctionPool:
        with self._lock:
            pool = self.pools.get(name)
        if pool is None:
            msg = f"function not found: {name}"
            raise FunctionNotFound(msg)
        return pool

    def invoke(self, name: str, event: bytes, request_id: str | None = None) -> Outcome:
        return self.pool(name).invoke(event, request_id or str(uuid.uuid4()))

    def invoke_tail(self, name: str, event: bytes, request_id: str) -> tuple[Outcome, str]:
        """Invoke and return the invocation's own log lines too (the tail FC sends for `x-fc-log-type: Tail`)."""
        pool = self.pool(name)
        with self.books[name].capture(request_id) as lines:
            outcome = pool.invoke(event, request_id)
        return outcome, "\n".join(lines)[-TAIL_BYTES:]

    def invoke_async(self, name: str, event: bytes, request_id: str | None = None) -> str:
        """Queue an invocation; it runs, with FC's async retries, after this returns the request id."""
        pool = self.pool(name)
        request_id = request_id or str(uuid.uuid4())
        status = AsyncStatus(request_id, name)
        with self._lock:
            self.async_status[request_id] = status
        self._async.submit(self._run_async, pool, event, status)
        return request_id

    def close(self) -> None:
        self._closed.set()
        self._async.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            pools, self.pools = list(self.pools.values()), {}
        for pool in pools:
            pool.close()

    def _run_async(self, pool: FunctionPool, event: bytes, status: AsyncStatus) -> None:
        retries = pool.deployment.spec.async_retries
        status.state = "Running"
        for attempt in range(retries + 1):
            if attempt and self._closed.wait(self.async_backoff * 2 ** (attempt - 1)):
                return
            # Each attempt is an invocation of its own, as on FC; the log names the async request it serves.
            outcome = pool.invoke(event, status.request_id if attempt == 0 else f"{status.request_id}-{attempt}")
            status.attempts = attempt + 1
            if outcome.ok:
                status.state, status.error = "Succeeded", None
                return
            status.error = outcome.error
            self.books[pool.deployment.spec.name].write(
                f"{stamp()} {status.request_id} [WARN] async attempt {attempt + 1} of {retries + 1} failed: "
                f"{(outcome.error or {}).get('errorMessage')}")
        status.state = "Failed"
