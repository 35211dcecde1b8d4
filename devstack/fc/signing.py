"""ACS3-HMAC-SHA256, the V3 signature `alibabacloud_tea_openapi` puts on FC 3.0 requests, checked server-side.

Canonical request = method, path, canonical query (keys sorted, values percent-encoded with only `~` safe),
the signed headers as `name:value` lines (lower-cased, sorted), their names joined by `;`, and the hex SHA-256
of the body (sent as `x-acs-content-sha256`). The signature is hex HMAC-SHA256 over
`ACS3-HMAC-SHA256\\n<hex sha256 of the canonical request>`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"
_AUTH = re.compile(rf"{ALGORITHM} Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)")


class SignatureError(Exception):
    """The request is not signed by a known key; `code` and `status` are FC's."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def verify(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes,
           secrets: Mapping[str, str]) -> str:
    """Check the Authorization header against `secrets` (access key id -> secret); returns the key id."""
    lowered = {k.lower(): v for k, v in headers.items()}
    auth = _AUTH.fullmatch(lowered.get("authorization", "").strip())
    if auth is None:
        raise SignatureError(401, "InvalidAuthorization",
                             f"the Authorization header is missing or not {ALGORITHM}")
    key_id, signed, signature = auth.groups()
    secret = secrets.get(key_id)
    if secret is None:
        raise SignatureError(401, "InvalidAccessKeyId.NotFound", f"Specified access key is not found: {key_id}")
    payload = hashlib.sha256(body).hexdigest()
    if lowered.get("x-acs-content-sha256", payload) != payload:
        raise SignatureError(400, "InvalidArgument", "x-acs-content-sha256 does not match the request body")
    names = signed.split(";")
    if "host" not in names or any(name not in lowered for name in names):
        raise SignatureError(403, "SignatureNotMatch", f"signed headers {signed!r} miss host or a sent header")
    canonical = "\n".join((method, path or "/", _query(query),
                           "".join(f"{n}:{lowered[n].strip()}\n" for n in names), signed, payload))
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError(403, "SignatureNotMatch",
                             f"The request signature we calculated does not match the signature you provided. "
                             f"Check your key and signing method. String to sign: {to_sign!r}")
    return key_id


def _query(query: Mapping[str, str]) -> str:
    return "&".join(f"{k}={quote(query[k], safe='~')}" for k in sorted(query))
