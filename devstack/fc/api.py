"""FC 3.0's InvokeFunction on 127.0.0.1, for the unmodified `alibabacloud-fc20230330` client.

`POST /2023-03-30/functions/{name}/invocations`, signed with ACS3-HMAC-SHA256. Synchronous by default: 200
with the function's return value, or, when the function raised or timed out, 200 with
`x-fc-error-type: UnhandledInvocationError` and the error as JSON (`errorMessage`, `errorType`, ...).
`x-fc-invocation-type: Async` answers 202 at once and queues the invocation. `x-fc-log-type: Tail` adds the
invocation's log lines as base64 in `x-fc-log-result`. A request target in absolute form (`POST http://host/...`,
what the SDK sends through a proxy) is served too, as HTTP/1.1 requires: the SDK sends through `HTTP_PROXY` and
ignores `NO_PROXY`, so with HTTP_PROXY pointing at the SLS emulator its `http_proxy` must name this server.
API errors are FC's JSON (`Code`, `Message`, `RequestId`): 404 FunctionNotFound, 401 for an unknown key,
403 SignatureNotMatch.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from devstack.fc.host import FcHost, FunctionNotFound
from devstack.fc.signing import SignatureError, verify

log = logging.getLogger(__name__)
_INVOKE = re.compile(r"/2023-03-30/functions/([^/]+)/invocations")


class FcApiServer:
    def __init__(self, host: FcHost, secrets: Mapping[str, str], port: int = 0) -> None:
        self.host = host
        self.secrets = dict(secrets)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler_class(self))
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FcApiServer:
        self._thread = threading.Thread(target=self.server.serve_forever, name="fc-api", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler_class(api: FcApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            request_id = str(uuid.uuid4())
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            match = _INVOKE.fullmatch(url.path)
            if match is None:
                self._error(404, "PathNotSupported", f"the local FC serves InvokeFunction only, not {url.path}",
                            request_id)
                return
            try:
                verify("POST", url.path, dict(parse_qsl(url.query, keep_blank_values=True)), dict(self.headers),
                       body, api.secrets)
            except SignatureError as exc:
                self._error(exc.status, exc.code, str(exc), request_id)
                return
            name = unquote(match[1])
            try:
                if self.headers.get("x-fc-invocation-type", "Sync").lower() == "async":
                    api.host.invoke_async(name, body, request_id)
                    self._send(202, b"", {"x-fc-request-id": request_id})
                    return
                tail = self.headers.get("x-fc-log-type", "None") == "Tail"
                if tail:
                    outcome, lines = api.host.invoke_tail(name, body, request_id)
                else:
                    outcome, lines = api.host.invoke(name, body, request_id), ""
            except FunctionNotFound:
                self._error(404, "FunctionNotFound", f"function not found: {name}", request_id)
                return
            headers = {"x-fc-request-id": request_id, "x-fc-instance-id": outcome.instance_id}
            if tail:
                headers["x-fc-log-result"] = base64.b64encode(lines.encode()).decode()
            if outcome.ok:
                self._send(200, outcome.payload, headers)
            else:
                headers["x-fc-error-type"] = "UnhandledInvocationError"
                self._send(200, json.dumps(outcome.error).encode(), headers, "application/json")

        def _error(self, status: int, code: str, message: str, request_id: str) -> None:
            body = json.dumps({"Code": code, "Message": message, "RequestId": request_id}).encode()
            self._send(status, body, {"x-fc-request-id": request_id}, "application/json")

        def _send(self, status: int, body: bytes, headers: Mapping[str, str],
                  content_type: str = "application/octet-stream") -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Type": content_type, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("fc api: " + format, *args)

    return Handler
