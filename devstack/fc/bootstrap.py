"""One FC instance, run by the runtime's own Python (`python3.10 bootstrap.py CODE_DIR HANDLER [INITIALIZER]`).

Standard library only and Python 3.10 syntax: it runs beside the unpacked code, not beside this project. It
imports the handler from CODE_DIR, runs the initializer once, then serves invocations: one JSON line per
request on stdin, one JSON line per answer on the protocol pipe (the original stdout). The function's own
stdout and logging go to stderr, one line each, prefixed with the time and the request id, as FC's logs are.
"""

from __future__ import annotations

import base64
import datetime
import importlib
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, BinaryIO

_current = threading.local()
_write_lock = threading.Lock()


def _request_id() -> str:
    return getattr(_current, "request_id", "-")


class _Lines:
    """A text stream whose every line reaches stderr prefixed like FC's log lines."""

    def __init__(self, level: str) -> None:
        self.level, self.buffer = level, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            _log_line(self.level, line)
        return len(text)

    def flush(self) -> None:
        pass


def _log_line(level: str, text: str) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    # Every physical line carries the request id, so one invocation's traceback can be picked out whole.
    prefix = f"{stamp} {_request_id()} [{level}] "
    os.write(2, "".join(prefix + line + "\n" for line in text.split("\n")).encode(errors="replace"))


class _FcLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a bad format string must not kill an invocation
            text = str(record.msg)
        for line in text.splitlines() or [""]:
            _log_line(record.levelname, line)


def _context(raw: dict[str, Any]) -> SimpleNamespace:
    """FC's python3.10 context: snake_case credentials, function and service metadata, region, account id."""
    fn, svc = raw["function"], raw["service"]
    return SimpleNamespace(
        request_id=raw["request_id"],
        credentials=SimpleNamespace(**raw["credentials"]),
        function=SimpleNamespace(name=fn["name"], handler=fn["handler"], memory=fn["memory"], timeout=fn["timeout"]),
        service=SimpleNamespace(**svc), region=raw["region"], account_id=raw["account_id"],
        tracing=SimpleNamespace(span_context=None, jaeger_endpoint=None, span_baggages={}))


def _error(exc: BaseException) -> dict[str, Any]:
    return {"errorMessage": str(exc), "errorType": type(exc).__name__,
            "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__)[1:]}


def _send(out: BinaryIO, message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    with _write_lock:
        out.write(data)
        out.flush()


def _load(spec: str) -> Callable[..., Any]:
    module_name, _, function_name = spec.rpartition(".")
    module = importlib.import_module(module_name)
    function = getattr(module, function_name, None)
    if not callable(function):
        msg = f"module {module_name!r} has no function {function_name!r}"
        raise AttributeError(msg)
    return function


def _result_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


def _invoke(out: BinaryIO, handler: Callable[..., Any], request: dict[str, Any]) -> None:
    _current.request_id = request["context"]["request_id"]
    _log_line("INFO", "FC Invoke Start RequestId: " + _current.request_id)
    try:
        value = handler(base64.b64decode(request["event"]), _context(request["context"]))
        answer = {"id": request["id"], "ok": True, "result": base64.b64encode(_result_bytes(value)).decode()}
    except Exception as exc:
        _log_line("ERROR", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
        answer = {"id": request["id"], "ok": False, "error": _error(exc)}
    _log_line("INFO", "FC Invoke End RequestId: " + _current.request_id)
    _send(out, answer)


def main(argv: list[str]) -> int:
    code_dir, handler_spec = argv[1], argv[2]
    initializer_spec = argv[3] if len(argv) > 3 else ""
    # The protocol keeps the real stdout; print() and logging go to stderr like the function's other output.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout, sys.stderr = _Lines("INFO"), _Lines("ERROR")
    root = logging.getLogger()
    root.addHandler(_FcLogHandler())
    root.setLevel(logging.INFO)
    sys.path.insert(0, code_dir)
    os.chdir(code_dir)
    init = json.loads(sys.stdin.readline())
    try:
        handler = _load(handler_spec)
        initializer = _load(initializer_spec) if initializer_spec else None
    except Exception as exc:
        _send(out, {"type": "import_error", "error": _error(exc)})
        return 1
    if init.get("probe"):
        # `dev deploy` checks the code imports under this Python, without running anything of it.
        _send(out, {"type": "ready"})
        return 0
    if initializer is not None:
        _current.request_id = init["context"]["request_id"]
        try:
            initializer(_context(init["context"]))
        except Exception as exc:
            _log_line("ERROR", "initializer failed: " + "".join(traceback.format_exception_only(type(exc), exc)))
            _send(out, {"type": "init_error", "error": _error(exc)})
            return 1
    _send(out, {"type": "ready"})
    for line in sys.stdin:
        request = json.loads(line)
        threading.Thread(target=_invoke, args=(out, handler, request), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
