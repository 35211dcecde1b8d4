"""Retry policy for SLS calls, kept out of the code that makes them (tenacity), and the time bound of each call."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aliyun.log import LogClient, LogException
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter

from processor.deadline import Deadline
from processor.endpoint import unresolved_message
from processor.errors import BudgetExceededError, SourceError

log = logging.getLogger(__name__)

# Transient by nature: the server is busy or failed, or the connection dropped.
TRANSIENT_CODES = frozenset({"InternalServerError", "ServerBusy", "RequestTimeout", "LogRequestError", "BadResponse"})
# What reads retry besides: throttling, which passes once the shard's quota refills.
RETRIABLE_CODES = TRANSIENT_CODES | {"ReadQuotaExceed", "ShardReadQuotaExceed", "ExceedQuota"}


def is_retriable_sls_error(exc: BaseException) -> bool:
    if not isinstance(exc, LogException) or unresolved_host(exc) is not None:
        return False
    return exc.get_error_code() in RETRIABLE_CODES or exc.resp_status >= 500


# The SDK wraps requests' error text in a LogRequestError; urllib3 2 names the host it failed to resolve.
_FAILED_TO_RESOLVE = re.compile(r"Failed to resolve '([^']+)'")
_RESOLVER_ERRORS = re.compile(r"Name or service not known|nodename nor servname|getaddrinfo failed|"
                              r"Temporary failure in name resolution|No address associated with hostname")
_POOL_HOST = re.compile(r"host='([^']+)'")


def unresolved_host(exc: BaseException) -> str | None:
    """The host name an SLS request failed to resolve, or None for any other failure.

    A name that does not resolve now will not on the next try either: retrying it only spends the budget.
    """
    if not isinstance(exc, LogException) or exc.get_error_code() != "LogRequestError":
        return None
    text = exc.get_error_message()
    if match := _FAILED_TO_RESOLVE.search(text):
        return match[1]
    if _RESOLVER_ERRORS.search(text):
        return match[1] if (match := _POOL_HOST.search(text)) else "?"
    return None


def name_resolution_error(exc: BaseException, doing: str) -> SourceError | None:
    """A SourceError naming the host that did not resolve while `doing`, and what to check; else None."""
    host = unresolved_host(exc)
    if host is None:
        return None
    if "ProxyError" in str(exc):
        return SourceError(f"cannot resolve the proxy host {host!r} {doing}: check HTTP_PROXY / HTTPS_PROXY")
    return SourceError(f"{unresolved_message(host)} ({doing})")


@dataclass
class RetryStats:
    sls_retries: int = 0
    aborted_transactions: int = 0


def is_transient_sls_error(exc: BaseException) -> bool:
    """Worth another try on any SLS call: the server failed or the connection did (not a quota or a refusal)."""
    if not isinstance(exc, LogException) or unresolved_host(exc) is not None:
        return False
    return exc.get_error_code() in TRANSIENT_CODES or exc.resp_status >= 500


def sls_retrying(deadline: Deadline, stats: RetryStats, sleep: Callable[[float], None] = time.sleep,
                 max_wait: float = 2.0,
                 retriable: Callable[[BaseException], bool] = is_retriable_sls_error) -> Retrying:
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
        retry=retry_if_exception(retriable),
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
            if (unresolved := name_resolution_error(failure, what)) is not None:
                raise unresolved from exc
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
