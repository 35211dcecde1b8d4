"""The emulator's own HTTP admin API under /_emulator/ (never signed, never hit by faults).

* ``GET /_emulator/faults`` - remaining fault rules; ``POST`` one rule object or a list of them (see
  `faults.Fault` for keys, e.g. ``{"op": "pull_logs", "action": "error", "code": "ReadQuotaExceed",
  "times": 3, "shard": 0}``); ``DELETE`` clears them.
* ``POST /_emulator/ttl`` - ``{"project", "logstore", "seconds"}``; ``seconds: null`` restores the ttl in days.
* ``POST /_emulator/reset`` - delete every project and clear the faults.
"""

from __future__ import annotations

from typing import Any

from .errors import parameter_invalid
from .faults import Fault, FaultInjector
from .http_types import Request, Response
from .router import not_found
from .store import Store

PREFIX = "/_emulator/"


def handle_admin(req: Request, store: Store, faults: FaultInjector) -> Response:
    """Serve one admin request."""
    name = req.path[len(PREFIX) :].strip("/")
    if name == "faults":
        return _faults(req, faults)
    if name == "ttl" and req.method == "POST":
        doc = _object(req.json())
        seconds = doc.get("seconds")
        if seconds is not None and (not isinstance(seconds, int | float) or seconds <= 0):
            msg = f"seconds must be a positive number or null, got {seconds!r}"
            raise parameter_invalid(msg)
        store.set_ttl_seconds(str(doc.get("project")), str(doc.get("logstore")), seconds)
        return Response.of_json({"ok": True})
    if name == "reset" and req.method == "POST":
        store.reset()
        faults.clear()
        return Response.of_json({"ok": True})
    raise not_found(req.method, req.path)


def _faults(req: Request, faults: FaultInjector) -> Response:
    if req.method == "POST":
        doc = req.json()
        try:
            for rule in doc if isinstance(doc, list) else [doc]:
                faults.add(Fault.from_json(_object(rule)))
        except (TypeError, ValueError) as exc:
            msg = f"bad fault rule: {exc}"
            raise parameter_invalid(msg) from exc
    elif req.method == "DELETE":
        faults.clear()
    elif req.method != "GET":
        raise not_found(req.method, req.path)
    return Response.of_json({"faults": faults.pending()})


def _object(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise parameter_invalid("expected a JSON object")
    return doc
