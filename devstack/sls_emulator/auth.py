"""Optional verification of the SDK's v1 request signature (HMAC-SHA1), with STS tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from .errors import SlsError

MAX_CLOCK_SKEW_S = 15 * 60
# The SDK adds x-log-date *after* signing (auth.py: "bypass some proxy"), so it cannot be part of the string.
_UNSIGNED_HEADERS = frozenset({"x-log-date"})


@dataclass
class _Key:
    secret: str
    security_token: str | None
    token_expired: bool = False


class Authenticator:
    """Checks `Authorization: LOG <id>:<signature>` against configured access keys.

    With no keys configured every request is accepted (the default). Keys can carry an STS token the
    request must present in ``x-acs-security-token``; `expire_token` makes it fail as an expired one would.
    """

    def __init__(self, credentials: Mapping[str, str] | None = None, clock: Callable[[], float] = time.time) -> None:
        self._keys = {key_id: _Key(secret, None) for key_id, secret in (credentials or {}).items()}
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether any access key is configured (and so signatures are checked)."""
        return bool(self._keys)

    def add_key(self, access_key_id: str, secret: str, security_token: str | None = None) -> None:
        """Accept another access key, optionally an STS one bound to ``security_token``."""
        with self._lock:
            self._keys[access_key_id] = _Key(secret, security_token)

    def expire_token(self, access_key_id: str) -> None:
        """Make the key's STS token answer 401 Unauthorized "expired" from now on."""
        with self._lock:
            self._keys[access_key_id].token_expired = True

    def verify(self, method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str]) -> None:
        """Raise the SLS error a real endpoint would give; ``headers`` keys must be lower-case."""
        if not self.enabled:
            return
        authorization = headers.get("authorization", "")
        if not authorization.startswith("LOG ") or ":" not in authorization:
            raise SlsError("Unauthorized", "no valid Authorization header (LOG <AccessKeyId>:<Signature>)")
        key_id, _, signature = authorization[4:].strip().rpartition(":")
        with self._lock:
            key = self._keys.get(key_id)
        if key is None:
            raise SlsError("InvalidAccessKeyId", f"The AccessKeyId is not found: {key_id}")
        self._check_token(key, headers.get("x-acs-security-token"))
        self._check_date(headers.get("date", ""))
        to_sign = string_to_sign(method, path, query, headers)
        expected = base64.b64encode(hmac.new(key.secret.encode(), to_sign.encode(), hashlib.sha1).digest())
        if not hmac.compare_digest(expected.decode(), signature):
            raise SlsError("SignatureNotMatch", f"signature {signature} not match, string to sign: {to_sign!r}")

    @staticmethod
    def _check_token(key: _Key, presented: str | None) -> None:
        if key.security_token is None:
            return
        if presented != key.security_token:
            raise SlsError("Unauthorized", "The security token you provided is invalid.")
        if key.token_expired:
            raise SlsError("Unauthorized", "The security token you provided has expired.")

    def _check_date(self, date: str) -> None:
        try:
            sent = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError) as exc:
            raise SlsError("InvalidRequestTime", f"Date header {date!r} is not an RFC 822 date") from exc
        if abs(self._clock() - sent) > MAX_CLOCK_SKEW_S:
            raise SlsError("RequestTimeExpired", f"request time {date} differs from server time by over 15 minutes")


def string_to_sign(method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str]) -> str:
    """The v1 string to sign, from decoded query values (the SDK signs raw values, the wire encodes them)."""
    log_headers = sorted(
        (name, value)
        for name, value in headers.items()
        if (name.startswith("x-acs-") or (name.startswith("x-log-") and not name.startswith("x-log-meta-")))
        and name not in _UNSIGNED_HEADERS
    )
    resource = unquote(path)
    if query:
        resource += "?" + "&".join(f"{k}={v}" for k, v in sorted(query, key=lambda kv: kv[0]))
    return (
        f"{method}\n{headers.get('content-md5', '')}\n{headers.get('content-type', '')}\n{headers.get('date', '')}\n"
        + "".join(f"{name}:{value}\n" for name, value in log_headers)
        + resource
    )
