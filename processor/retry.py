"""Retry policy for SLS calls, kept out of the code that makes them (tenacity)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aliyun.log import LogException
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter

from processor.deadline import Deadline
from processor.errors import BudgetExceededError

log = logging.getLogger(__name__)

# Transient by nature: the server is busy, throttling us, or the connection dropped.
RETRIABLE_CODES = frozenset({
    "InternalServerError", "ServerBusy", "RequestTimeout", "ReadQuotaExceed", "ShardReadQuotaExceed",
    "ExceedQuota", "LogRequestError", "BadResponse",
})


def is_retriable_sls_error(exc: BaseException) -> bool:
    if not isinstance(exc, LogException):
        return False
    return exc.get_error_code() in RETRIABLE_CODES or exc.resp_status >= 500


@dataclass
class RetryStats:
    sls_retries: int = 0
    kafka_retries: int = 0


def sls_retrying(deadline: Deadline, stats: RetryStats, sleep: Callable[[float], None] = time.sleep,
                 max_wait: float = 2.0) -> Retrying:
    """Exponential backoff with jitter until the invocation's budget would be overrun by the next sleep."""

    def stop(state: RetryCallState) -> bool:
        return deadline.remaining() <= state.upcoming_sleep

    def before_sleep(state: RetryCallState) -> None:
        stats.sls_retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.warning("SLS call failed (%s), attempt %d, retrying in %.2fs", _describe(exc), state.attempt_number,
                    state.upcoming_sleep)

    def give_up(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        msg = (f"SLS kept failing for {state.attempt_number} attempts until the time budget ran out; "
               f"last error: {_describe(exc)}")
        raise BudgetExceededError(msg) from exc

    return Retrying(
        retry=retry_if_exception(is_retriable_sls_error),
        wait=wait_exponential_jitter(multiplier=0.2, max=max_wait, jitter=0.5),
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=give_up,
        reraise=True,
    )


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, LogException):
        return f"{exc.get_error_code()} (HTTP {exc.resp_status}): {exc.get_error_message()}"
    return repr(exc)
