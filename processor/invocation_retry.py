"""The trigger's retry of a whole invocation, shared by the trigger runner and backfill, and the flag that stops
either between invocations."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_when_event_set,
)

from common.errors import ConfigError, CursorExpiredError, EventError
from processor.sls.retry import backoff

log = logging.getLogger(__name__)

# Errors the same event reproduces: retrying only delays the failure.
NOT_RETRIED = (ConfigError, EventError, CursorExpiredError)
# The trigger retries an invocation after seconds, not milliseconds: what failed was a whole range.
INVOCATION_BACKOFF = backoff(first=1.0, cap=30.0, jitter=1.0)


class StopFlag(Protocol):
    """threading.Event or multiprocessing.Event."""

    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


def invocation_retrying(max_retry: int, stop: StopFlag, sleep: Callable[[float], Any], what: str) -> Retrying:
    """The trigger's retry policy for one event: `max_retry` retries with backoff, cut short by `stop`.

    Like the trigger, it retries whatever the function raised, except errors the same event reproduces (an
    expired cursor under SLS_INVALID_CURSOR_POLICY=fail among them).
    """

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: invocation failed (attempt %d of %d): %s; retrying in %.1fs", what, state.attempt_number,
                    max_retry + 1, exc, state.upcoming_sleep)

    return Retrying(
        retry=retry_if_exception_type(Exception) & retry_if_not_exception_type(NOT_RETRIED),
        stop=stop_after_attempt(max_retry + 1) | stop_when_event_set(stop),
        wait=INVOCATION_BACKOFF,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
