"""Transport-neutral request/response values shared by the router, the admin API and the HTTP server."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from .errors import SlsError, parameter_invalid


@dataclass(frozen=True)
class Request:
    """An SLS request after URL and Host parsing; header names are lower-case."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    project: str
    client_ip: str

    def param(self, name: str, default: str | None = None) -> str | None:
        """Last value of a query parameter."""
        values = [v for k, v in self.query if k == name]
        return values[-1] if values else default

    def required(self, name: str) -> str:
        """A query parameter that must be present, else 400 MissingParameter."""
        value = self.param(name)
        if value is None:
            raise SlsError("MissingParameter", f"query parameter {name} is required")
        return value

    def json(self) -> Any:
        """The body parsed as JSON, else 400 ParameterInvalid."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            msg = f"body is not valid JSON: {exc}"
            raise parameter_invalid(msg) from exc


@dataclass
class Response:
    """Status, headers and body; every response carries a fresh x-log-requestid."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.headers.setdefault("x-log-requestid", uuid.uuid4().hex[:24].upper())

    @classmethod
    def of_json(cls, doc: Any, status: int = 200) -> Response:
        """A JSON response."""
        return cls(status, json.dumps(doc).encode(), {"Content-Type": "application/json"})

    @classmethod
    def of_error(cls, error: SlsError) -> Response:
        """The SLS error document with its status."""
        return cls.of_json(error.body(), error.status)
