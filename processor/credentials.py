"""Credentials for SLS, read per invocation because FC's STS tokens rotate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.errors import ConfigError


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    # repr=False keeps the secret and token out of logs and tracebacks.
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.access_key_secret, self.security_token) if s)


def resolve_credentials(context: Any, env: Mapping[str, str]) -> Credentials:
    """`context.credentials` (FC python3.10 and older) when present, else the ALIBABA_CLOUD_* variables (3.12)."""
    creds = getattr(context, "credentials", None)
    if creds is not None and getattr(creds, "access_key_id", None):
        return Credentials(creds.access_key_id, creds.access_key_secret, getattr(creds, "security_token", None) or None)
    key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "")
    secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "")
    if not key_id or not secret:
        msg = ("no SLS credentials: the FC context has none and ALIBABA_CLOUD_ACCESS_KEY_ID / "
               "ALIBABA_CLOUD_ACCESS_KEY_SECRET are not set (give the function a role, or set them)")
        raise ConfigError(msg)
    return Credentials(key_id, secret, env.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None)
