"""Retry policies from tenacity's parts: which errors are worth another try, when to stop, how long to wait; and
the time bound of every SLS request.

Every SLS call stops retrying by one rule, `stop_before_deadline`; the trigger's retry of a whole invocation is
in `processor.invocation_retry`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aliyun.log import LogClient, LogException
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential, wait_random
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from common.deadline import Deadline
from common.errors import BudgetExceededError, SourceError
from common.sls_errors import describe, sls_error, unresolved_host

log = logging.getLogger(__name__)

# Transient by nature: the server is busy or failed, or the connection dropped.
TRANSIENT_CODES = frozenset({"InternalServerError", "ServerBusy", "RequestTimeout", "LogRequestError", "BadResponse"})
# What reads retry besides: throttling, which passes once the shard's quota refills.
RETRIABLE_CODES = TRANSIENT_CODES | {"ReadQuotaExceed", "ShardReadQuotaExceed", "ExceedQuota"}


def is_retriable_sls_error(exc: BaseException) -> bool:
    if not isinstance(exc, LogException) or unresolved_host(exc) is not None:
        return False
    return exc.get_error_code() in RETRIABLE_CODES or exc.resp_status >= 500


def is_transient_sls_error(exc: BaseException) -> bool:
    """Worth another try on any SLS call: the server failed or the connection did (not a quota or a refusal)."""
    if not isinstance(exc, LogException) or unresolved_host(exc) is not None:
        return False
    return exc.get_error_code() in TRANSIENT_CODES or exc.resp_status >= 500


class stop_before_deadline(stop_base):  # lower case like the tenacity stops it is composed with
    """Stop once the next sleep would not end before `deadline`: no try starts that could not be answered.

    Reads `RetryCallState.upcoming_sleep`, set before the stop is asked from tenacity 8.3 on.
    """

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.deadline.remaining() <= retry_state.upcoming_sleep


def backoff(first: float, cap: float, jitter: float) -> wait_base:
    """Waits doubling from `first`, each with up to `jitter` added at random so that retries spread, `cap` at most."""
    return wait_exponential(multiplier=first, max=cap - jitter) + wait_random(0, jitter)


# A dropped connection or a busy server usually passes within a second; throttling within a few. The cap keeps
# a retry within reach of a short invocation's budget.
SLS_BACKOFF = backoff(first=0.2, cap=2.0, jitter=0.5)


@dataclass
class RetryStats:
    sls_retries: int = 0
    aborted_transactions: int = 0


def sls_retrying(deadline: Deadline, stats: RetryStats | None = None, sleep: Callable[[float], None] = time.sleep,
                 retriable: Callable[[BaseException], bool] = is_retriable_sls_error) -> Retrying:
    """Every SLS call's policy: `retriable` errors again after `SLS_BACKOFF`, until `deadline` would be overrun by
    the next sleep; then `BudgetExceededError` naming the last error."""

    def before_sleep(state: RetryCallState) -> None:
        if stats is not None:
            stats.sls_retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.warning("SLS call failed (%s), attempt %d, retrying in %.2fs", describe(exc), state.attempt_number,
                    state.upcoming_sleep)

    def give_up(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        msg = (f"SLS kept failing for {state.attempt_number} attempts until the time budget ran out; "
               f"last error: {describe(exc)}")
        raise BudgetExceededError(msg) from exc

    return Retrying(retry=retry_if_exception(retriable), wait=SLS_BACKOFF, stop=stop_before_deadline(deadline),
                    sleep=sleep, before_sleep=before_sleep, retry_error_callback=give_up, reraise=True)


# `LogClient._send` sleeps this long before each of its own retries (5xx, RequestTimeout, connection-pool errors
# such as a read timeout), up to 10 tries: 10 x (timeout + 1 s) for one call when SLS hangs.
SDK_RETRY_PAUSE_SECONDS = 1.0
# No request is sent with less time than this left: it could not get an answer anyway.
MIN_REQUEST_SECONDS = 0.05


class PullTooLargeError(SourceError):
    """A PullLogs response of several log groups was over the page limit; its body was not read."""

    def __init__(self, groups: int, raw_size: int, limit: int) -> None:
        super().__init__(f"PullLogs answered {groups} log groups of {raw_size} bytes, over the page limit of "
                         f"{limit} bytes: pull fewer groups")
        self.groups = groups
        self.raw_size = raw_size


class DeadlineLogClient(LogClient):
    """A view of `client` whose every HTTP request, the SDK's own retries included, ends by `deadline`.

    Each request's timeout is the time left, capped at the client's own timeout. A request that would start
    with no time left, or a failure the SDK would retry only after the deadline, raises `BudgetExceededError`:
    it is no `LogException`, so neither the SDK nor `sls_retrying` retries it. Nor is a host name that does not
    resolve retried: it raises `SourceError` naming the host at once.

    With `max_pull_bytes`, a PullLogs response of more than one log group whose uncompressed size (a header)
    is over it raises `PullTooLargeError` before its body is read: the SDK would hold the body twice while
    decompressing, so one response of 1,000 large groups could take GBs.

    The view shares the client's endpoint, signer and keep-alive session (LogClient's constructor would resolve
    the endpoint and open new connections). It replaces the SDK's `_getHttpResponse`, the one place every
    request goes through, keeping its contract: (status, body, headers), or `LogRequestError` for a failure.
    """

    def __init__(self, client: LogClient, deadline: Deadline, max_pull_bytes: int | None = None) -> None:
        vars(self).update(vars(client))
        self.deadline = deadline
        self.max_pull_bytes = max_pull_bytes

    def _getHttpResponse(self, method: str, url: str, params: Any, body: Any,
                         headers: Any) -> tuple[int, bytes, Any]:
        what = f"SLS {method} {url.split('?', maxsplit=1)[0]}"
        left = self.deadline.remaining()
        if left < MIN_REQUEST_SECONDS:
            msg = f"time budget spent before {what} could be sent"
            raise BudgetExceededError(msg)
        headers["User-Agent"] = self._user_agent
        try:
            resp = self._get_http_sender(method)(url, params=params, data=body, headers=headers, stream=True,
                                                 timeout=min(self._timeout, left))
            too_large = self._too_large(resp, params)
            if too_large is None:
                content = resp.content
        except Exception as exc:
            if self.deadline.remaining() < SDK_RETRY_PAUSE_SECONDS:
                msg = f"{what} got no answer within the time budget: {exc}"
                raise BudgetExceededError(msg) from exc
            failure = LogException("LogRequestError", str(exc))
            # The SDK would try a name that does not resolve 10 times, 1 s apart: it will not resolve either.
            if unresolved_host(failure) is not None:
                raise sls_error(what, failure, SourceError) from exc
            raise failure from exc
        if too_large is not None:
            resp.close()
            raise too_large
        if resp.status_code >= 500 and self.deadline.remaining() < SDK_RETRY_PAUSE_SECONDS:
            msg = f"{what} answered HTTP {resp.status_code} with no time left in the budget to try again"
            raise BudgetExceededError(msg)
        return resp.status_code, content, resp.headers

    def _too_large(self, resp: Any, params: Any) -> PullTooLargeError | None:
        is_pull = params.get("type") == "log" and "cursor" in params and "count" in params
        if not is_pull or self.max_pull_bytes is None or resp.status_code != 200:
            return None
        groups = int(resp.headers.get("x-log-count") or 0)
        raw_size = int(resp.headers.get("x-log-bodyrawsize") or 0)
        if groups > 1 and raw_size > self.max_pull_bytes:
            return PullTooLargeError(groups, raw_size, self.max_pull_bytes)
        return None
