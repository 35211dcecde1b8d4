"""Pytest fixtures for the SLS emulator; the root conftest re-exports them (``from tests.sls_fixtures import *``).

* ``sls_emulator`` (session): the running `EmulatorServer`; ``.store``/``.faults``/``.auth`` are its admin handles.
* ``sls_proxy_env`` (session): sets HTTP_PROXY/http_proxy to the emulator and returns the SDK endpoint to use.
* ``sls_client_factory`` (session): ``make(access_key_id=..., secret=..., security_token=None) -> LogClient``.
* ``sls_client``: a LogClient for the emulator.
* ``sls_project``: a fresh, uniquely named project (deleted afterwards).
* ``sls_faults``: the emulator's `FaultInjector`, cleared before and after the test.
* ``sls_clock``: a `ManualClock` driving the emulator's receive times and retention during the test.

Helper: ``pull_range(client, project, logstore, shard, begin, end, count=...)`` drains a cursor range.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aliyun.log import LogClient, LogException
from aliyun.log.pulllog_response import PullLogResponse

from devstack.sls_emulator import EmulatorServer, FaultInjector

__all__ = [
    "SLS_ACCESS_KEY_ID",
    "SLS_ACCESS_KEY_SECRET",
    "SLS_ENDPOINT",
    "ManualClock",
    "pull_range",
    "sls_client",
    "sls_client_factory",
    "sls_clock",
    "sls_emulator",
    "sls_faults",
    "sls_project",
    "sls_proxy_env",
]

# Any name works through the proxy; `.emulator` is not a real TLD, so a missing proxy fails fast in DNS.
SLS_ENDPOINT = "cn-hangzhou.log.emulator"
SLS_ACCESS_KEY_ID = "emulator-access-key"
SLS_ACCESS_KEY_SECRET = "emulator-secret"

SlsClientFactory = Callable[..., LogClient]


@pytest.fixture(scope="session")
def sls_emulator() -> Iterator[EmulatorServer]:
    """One in-memory emulator for the session, signatures unchecked."""
    server = EmulatorServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sls_proxy_env(sls_emulator: EmulatorServer) -> Iterator[str]:
    """Route plain-HTTP requests (the SDK's) through the emulator for the session; yields the endpoint.

    NO_PROXY is narrowed to loopback so that local services stay direct and nothing exempts the endpoint.
    """
    with pytest.MonkeyPatch.context() as mp:
        for name in ("HTTP_PROXY", "http_proxy"):
            mp.setenv(name, sls_emulator.proxy_url)
        for name in ("NO_PROXY", "no_proxy"):
            mp.setenv(name, "localhost,127.0.0.1,::1")
        yield SLS_ENDPOINT


@pytest.fixture(scope="session")
def sls_client_factory(sls_proxy_env: str) -> SlsClientFactory:
    """Build SDK clients for the emulator: ``make(access_key_id=..., secret=..., security_token=None)``."""

    def make(
        access_key_id: str = SLS_ACCESS_KEY_ID,
        secret: str = SLS_ACCESS_KEY_SECRET,
        security_token: str | None = None,
    ) -> LogClient:
        return LogClient(sls_proxy_env, access_key_id, secret, securityToken=security_token)

    return make


@pytest.fixture
def sls_client(sls_client_factory: SlsClientFactory) -> LogClient:
    """A LogClient talking to the session emulator."""
    return sls_client_factory()


@pytest.fixture
def sls_project(sls_client: LogClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new project named after the test (lower-case, SLS-valid); deleted afterwards."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"t-{stem}-{uuid.uuid4().hex[:8]}"
    sls_client.create_project(name, f"test project for {request.node.nodeid}")
    yield name
    with contextlib.suppress(LogException):
        sls_client.delete_project(name)


@pytest.fixture
def sls_faults(sls_emulator: EmulatorServer) -> Iterator[FaultInjector]:
    """The emulator's fault injector, empty at the start and cleared at the end of the test."""
    sls_emulator.faults.clear()
    yield sls_emulator.faults
    sls_emulator.faults.clear()


class ManualClock:
    """A clock that only moves when told to; callable like `time.time`."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@pytest.fixture
def sls_clock(sls_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """Freeze the emulator's clock (receive times, retention) at now; advance it with ``.advance(s)``."""
    clock = ManualClock(time.time())
    monkeypatch.setattr(sls_emulator.store, "clock", clock)
    return clock


def pull_range(
    client: LogClient, project: str, logstore: str, shard: int, begin: str, end: str, count: int = 1000, **kwargs: Any
) -> list[PullLogResponse]:
    """Pull [begin, end) page by page (the SDK's own stop rule: next cursor == end or unchanged)."""
    responses = []
    cursor = begin
    while cursor != end:
        response = client.pull_logs(project, logstore, shard, cursor, count=count, end_cursor=end, **kwargs)
        responses.append(response)
        if response.get_next_cursor() == cursor:
            break
        cursor = response.get_next_cursor()
    return responses
