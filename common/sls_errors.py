"""One translation of an SLS failure into an error naming the call, what SLS said and what to check.

An authentication failure's message is left out: SLS may echo the signed request back in it (SignatureNotMatch
quotes the string to sign), and with it the STS token. The masking of secrets where errors are printed is only a
backstop for this.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TypeVar

from aliyun.log import LogException

E = TypeVar("E", bound=Exception)

AUTH_CODES = frozenset({"Unauthorized", "InvalidAccessKeyId", "SignatureNotMatch", "SecurityToken.Expired",
                        "SecurityTokenExpired"})
# Errors retrying cannot fix: wrong credentials, a project/logstore/shard that is not there, a bad request.
HINTS = {
    "Unauthorized": "check the access key, secret and STS token (FC: the function's role)",
    "InvalidAccessKeyId": "check the access key id",
    "SignatureNotMatch": "the access key secret is wrong",
    "SecurityToken.Expired": "the STS token expired: FC hands each invocation a fresh one",
    "SecurityTokenExpired": "the STS token expired: FC hands each invocation a fresh one",
    "ProjectNotExist": "check the project name and the endpoint (region)",
    "LogStoreNotExist": "check the logstore name",
    "ShardNotExist": "check the shard id against ListShards",
    "ParameterInvalid": "a request parameter was rejected",
    "ProjectForbidden": "the project is disabled or the role lacks the permission",
}

# Where `sls-kafka dev up`'s emulator answers, for the hints below.
EMULATOR_SUFFIX = ".emulator"
DEV_EMULATOR_PROXY = "http://127.0.0.1:8090"
DEV_EMULATOR_ENDPOINT = "cn-hangzhou.log.emulator"

# The SDK wraps requests' error text in a LogRequestError; urllib3 2 names the host it failed to resolve.
_FAILED_TO_RESOLVE = re.compile(r"Failed to resolve '([^']+)'")
_RESOLVER_ERRORS = re.compile(r"Name or service not known|nodename nor servname|getaddrinfo failed|"
                              r"Temporary failure in name resolution|No address associated with hostname")
_POOL_HOST = re.compile(r"host='([^']+)'")


def is_auth_error(exc: LogException) -> bool:
    return exc.get_error_code() in AUTH_CODES or exc.resp_status == 401


def describe(exc: BaseException | None) -> str:
    """What SLS answered: code, HTTP status and message (not an authentication failure's message)."""
    if not isinstance(exc, LogException):
        return repr(exc)
    said = "its message is left out: it may echo the signed request" if is_auth_error(exc) else \
        exc.get_error_message()
    return f"{exc.get_error_code()} (HTTP {exc.resp_status}): {said}"


def sls_error(what: str, exc: LogException, error: Callable[[str], E], hint: str | None = None) -> E:
    """`error` saying that SLS failed `what` (e.g. "reading p/l shard 0"), why, and what to check.

    `hint` replaces the general one for the error code; a host that did not resolve is named with the endpoint
    and proxy settings to check instead.
    """
    if (host := unresolved_host(exc)) is not None:
        if "ProxyError" in str(exc):
            return error(f"cannot resolve the proxy host {host!r} {what}: check HTTP_PROXY / HTTPS_PROXY")
        return error(f"{unresolved_message(host)} ({what})")
    code = exc.get_error_code()
    hint = hint or HINTS.get(code, "not retriable")
    if is_auth_error(exc):
        return error(f"SLS {code} (HTTP {exc.resp_status}) {what} - {hint} (SLS's message is left out: it may "
                     "echo the signed request)")
    return error(f"SLS {code} (HTTP {exc.resp_status}) {what}: {exc.get_error_message()} - {hint}")


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


def unresolved_message(host: str) -> str:
    """`host` does not resolve: what that usually means, and what to set."""
    first, _, rest = host.partition(".")
    if _is_ip(rest):
        return (f"cannot resolve SLS host {host!r}: the SDK puts the project in front of the endpoint, so an IP "
                f"address with a port or a scheme does not work as SLS_ENDPOINT. For the emulator of `sls-kafka dev "
                f"up`: export HTTP_PROXY={DEV_EMULATOR_PROXY} SLS_ENDPOINT={DEV_EMULATOR_ENDPOINT} (any name works "
                "through the proxy)")
    if host.endswith(EMULATOR_SUFFIX):
        return (f"cannot resolve SLS host {host!r}: *{EMULATOR_SUFFIX} names work only with the SLS emulator as "
                f"HTTP proxy, and no proxy applies to this request: set HTTP_PROXY to the emulator as `sls-kafka dev "
                f"up` prints (export HTTP_PROXY={DEV_EMULATOR_PROXY}) and keep the name out of NO_PROXY")
    return (f"cannot resolve SLS host {host!r} (project {first!r} in front of the endpoint): check the endpoint, "
            "e.g. cn-hangzhou.log.aliyuncs.com (cn-hangzhou-intranet.log.aliyuncs.com inside Alibaba Cloud), the "
            "project name, DNS, or HTTP_PROXY if SLS is reached through a proxy")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
