"""HTTP front end: an SLS endpoint that is also an HTTP proxy target.

The SDK addresses ``http://<project>.<endpoint>`` and keeps a bare IPv4 endpoint as is only without a
port (``Util.is_row_ip``), so a local emulator on a high port is reached through ``HTTP_PROXY`` pointing at
it: requests then arrive in proxy form (absolute URI in the request line) under any endpoint name, and the
project is the first label of the Host header, which the SDK always sets to ``<project>.<endpoint>``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .admin import PREFIX, handle_admin
from .auth import Authenticator
from .errors import SlsError
from .faults import DELAY, DROP, ERROR, TRUNCATE, FaultInjector
from .handlers import Handlers
from .http_types import Request, Response
from .router import Router
from .store import Store

log = logging.getLogger(__name__)
_POLL_INTERVAL_S = 0.05  # how often serve_forever notices stop(); the default 0.5 s slows test teardown


def project_from_host(host: str) -> str:
    """Project named by a Host value: ``proj.cn-hangzhou.log.x`` -> ``proj``; an endpoint alone -> ''.

    An endpoint is recognised by its ``log`` label (``<region>.log.<domain>``), or is an IP/localhost.
    """
    name = host.strip().lower()
    if name.startswith("["):
        return ""  # IPv6 literal
    head, _, port = name.rpartition(":")
    if port.isdigit():
        name = head
    with contextlib.suppress(ValueError):
        ip_address(name)
        return ""
    labels = name.split(".")
    if len(labels) < 2:
        return ""
    if "log" in labels:
        return labels[0] if labels.index("log") >= 2 else ""
    return labels[0]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses one requests.Session
    server_version = "sls-emulator"
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle + delayed ACK stall keep-alive calls.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._quick_ack()

    def _quick_ack(self) -> None:
        """ACK at once: urllib3's proxy connections keep Nagle on and send a POST's headers and body
        separately, so a delayed ACK of the headers would hold the body back ~40 ms (Linux only; the kernel
        drops quick-ack mode again by itself, hence re-armed per request)."""
        if hasattr(socket, "TCP_QUICKACK"):
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def _serve(self) -> None:
        emulator = self.server.emulator
        req = self._parse()
        fault = None
        try:
            if req.path.startswith(PREFIX):
                response = handle_admin(req, emulator.store, emulator.faults)
            else:
                route = emulator.router.resolve(req)
                emulator.auth.verify(req.method, req.path, req.query, req.headers)
                fault = emulator.faults.take(route.op, req.project, route.logstore, route.shard)
                if fault is not None and fault.action == DROP:
                    self._drop()
                    return
                if fault is not None and fault.action == DELAY:
                    time.sleep(fault.delay_s)
                elif fault is not None and fault.action == ERROR:
                    raise fault.error()
                response = route.handler(req)
        except SlsError as exc:
            response = Response.of_error(exc)
        except Exception:
            log.exception("emulator bug serving %s %s", req.method, req.path)
            response = Response.of_error(SlsError("InternalServerError", "emulator internal error"))
        self._send(response, truncate=fault is not None and fault.action == TRUNCATE)

    def _parse(self) -> Request:
        length = int(self.headers.get("Content-Length") or 0)
        self._quick_ack()
        body = self.rfile.read(length) if length else b""
        target = urlsplit(self.path)  # proxy form carries scheme and host, origin form only the path
        host = self.headers.get("Host") or target.netloc
        headers = {name.lower(): value for name, value in self.headers.items()}
        return Request(
            method=self.command,
            path=unquote(target.path) or "/",
            query=parse_qsl(target.query, keep_blank_values=True),
            headers=headers,
            body=body,
            project=project_from_host(host),
            client_ip=self.client_address[0],
        )

    def _send(self, response: Response, truncate: bool = False) -> None:
        """Write the response; ``truncate`` sends only half the body and then closes the connection."""
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        # A truncated empty body still announces one byte so that the client notices the cut.
        declared = max(len(response.body), 1) if truncate else len(response.body)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        body = response.body[: declared // 2] if truncate else response.body
        if body:
            self.wfile.write(body)
        if truncate:
            self._drop()
        else:
            self._quick_ack()  # re-arm for the next request on this kept-alive connection

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End kept-alive connections so clients cannot keep talking to a stopped emulator."""
        with self._connections_lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class EmulatorServer:
    """An SLS emulator on ``host:port`` (port 0 picks a free one).

    ``credentials`` maps access key ids to secrets; when given, v1 signatures are checked. ``store``,
    ``faults`` and ``auth`` are the in-process admin handles.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: str | os.PathLike[str] | None = None,
        credentials: Mapping[str, str] | None = None,
        region: str = "cn-hangzhou",
    ) -> None:
        self.store = Store(data_dir)
        self.faults = FaultInjector()
        self.auth = Authenticator(credentials)
        self.router = Router(Handlers(self.store, region))
        self._httpd = _HttpServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """Bound address."""
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """Bound port."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. for the admin API."""
        return f"http://{self.host}:{self.port}"

    @property
    def proxy_url(self) -> str:
        """Value for HTTP_PROXY so that any SDK endpoint name reaches this emulator."""
        return self.url

    def start(self) -> EmulatorServer:
        """Serve from a background daemon thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(_POLL_INTERVAL_S,), name="sls-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and the data files."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        self._httpd.close_connections()
        self.store.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
