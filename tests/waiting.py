"""Waiting in end-to-end tests for something another process or thread does: one helper for all of them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 30, what: str = "the condition", every: float = 0.05) -> T:
    """Call `check` every `every` seconds until it returns something true, and return that; past `timeout`
    seconds, fail the test naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last: {result!r})")
        time.sleep(every)
