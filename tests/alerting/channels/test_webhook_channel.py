"""The webhook and DingTalk channels against a real local HTTP server: what it received, and how answers are classed."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alerting.channels.webhook import DingTalkChannel, DingTalkConfig, WebhookChannel, WebhookConfig, dingtalk_sign
from devstack.kafka import free_port
from tests.alerting.channels.channel_support import FIRING

SECRET = "SECb1f0c2d5e2c3a45f1ad1f3e0c9d7a2b4"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpServer:
    """Answers each POST with the next of `answers` (status, body), or 200 '{}'; keeps what it received."""

    port: int = 0
    answers: list[tuple[int, str]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    delay: float = 0.0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    state = HttpServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(Received(self.path, dict(self.headers), body))
            time.sleep(state.delay)
            status, text = state.answers.pop(0) if state.answers else (200, "{}")
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client that timed out left
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(text.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def test_webhook_posts_the_notification_as_json_with_its_id_as_idempotency_key(http_server):
    config = WebhookConfig(url=http_server.url(), headers=(("Authorization", "Bearer t0ken"),))

    result = WebhookChannel("hook", config).send(FIRING)

    assert result == type(result)(True, False, "HTTP 200 {}")
    [request] = http_server.received
    assert request.path == "/hook"
    assert request.headers["Idempotency-Key"] == FIRING.id
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    body = json.loads(request.body)
    assert body["id"] == FIRING.id
    assert (body["rule"], body["severity"], body["transition"]) == ("speeding-count", "critical", "firing")
    assert (body["value"], body["comparison"], body["threshold"]) == (73.0, ">", 50.0)
    assert body["groups"] == [{"group": "1234", "value": 131.0}, {"group": "3512", "value": 127.5}]
    assert body["history"][-1] == {"window_start": 1_764_662_400, "value": 73.0}
    assert body["samples"][0] == {"record": '{"speed":131,"carID":1234}', "project": "fleet", "logstore": "driving",
                                  "shard": 2, "cursor": "MTcwMDAwMDAwMDAwMDAwMA==", "event_time": 1_764_662_431}


@pytest.mark.parametrize(("status", "retryable"), [
    (500, True), (503, True), (429, True), (408, True), (400, False), (404, False), (302, False),
])
def test_webhook_classes_an_http_refusal_by_status_and_keeps_the_body(http_server, status, retryable):
    http_server.answers.append((status, '{"error": "nope"}'))

    result = WebhookChannel("hook", WebhookConfig(url=http_server.url())).send(FIRING)

    assert (result.delivered, result.retryable) == (False, retryable)
    assert result.reply == f'HTTP {status} {{"error": "nope"}}'
    assert len(http_server.received) == 1  # a redirect is not followed


def test_webhook_timeout_and_refused_connection_are_retryable(http_server):
    http_server.delay = 1.0
    timed_out = WebhookChannel("hook", WebhookConfig(url=http_server.url(), timeout=0.3)).send(FIRING)
    refused = WebhookChannel("hook", WebhookConfig(url=f"http://127.0.0.1:{free_port()}/")).send(FIRING)

    assert (timed_out.delivered, timed_out.retryable) == (False, True)
    assert "timed out" in timed_out.reply
    assert (refused.delivered, refused.retryable) == (False, True)
    assert "Connection refused" in refused.reply


def test_dingtalk_posts_signed_markdown_that_the_robot_would_verify(http_server):
    config = DingTalkConfig(url=http_server.url("/robot/send?access_token=abc123"), secret=SECRET,
                            at_mobiles=("13800000000",))
    http_server.answers.append((200, '{"errcode":0,"errmsg":"ok"}'))

    before = int(time.time() * 1000)
    result = DingTalkChannel("ding", config).send(FIRING)

    assert result == type(result)(True, False, 'HTTP 200 {"errcode":0,"errmsg":"ok"}')
    [request] = http_server.received
    path, _, query = request.path.partition("?")
    assert path == "/robot/send"
    params = urllib.parse.parse_qs(query)
    assert params["access_token"] == ["abc123"]
    timestamp = params["timestamp"][0]
    assert before <= int(timestamp) <= time.time() * 1000
    expected = base64.b64encode(hmac.new(SECRET.encode(), f"{timestamp}\n{SECRET}".encode(), "sha256").digest())
    assert params["sign"] == [expected.decode()]  # parse_qs undid the URL-encoding DingTalk asks for
    assert urllib.parse.quote_plus(expected) in query
    body = json.loads(request.body)
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "[FIRING] speeding-count"
    text = body["markdown"]["text"]
    assert "### [FIRING] speeding-count (critical)" in text
    assert "- **value** 73 > 50" in text
    assert "- 1234: 131" in text
    assert "fleet/driving shard 2 cursor MTcwMDAwMDAwMDAwMDAwMA==" in text
    assert body["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}


def test_dingtalk_without_a_secret_sends_no_signature(http_server):
    result = DingTalkChannel("ding", DingTalkConfig(url=http_server.url("/robot/send?access_token=x"))).send(FIRING)

    assert result.delivered is False  # '{}' has no errcode: not DingTalk's answer
    assert "no errcode" in result.reply
    assert http_server.received[0].path == "/robot/send?access_token=x"


@pytest.mark.parametrize(("errcode", "retryable"), [(310000, False), (300001, False), (130101, True), (-1, True)])
def test_dingtalk_refusals_come_as_200_with_an_errcode(http_server, errcode, retryable):
    answer = json.dumps({"errcode": errcode, "errmsg": "keywords not in content"})
    http_server.answers.append((200, answer))

    result = DingTalkChannel("ding", DingTalkConfig(url=http_server.url("/robot/send?access_token=x"),
                                                    secret=SECRET)).send(FIRING)

    assert (result.delivered, result.retryable) == (False, retryable)
    assert result.reply == f"HTTP 200 {answer}"


def test_dingtalk_sign_at_a_given_time_is_the_url_encoded_base64_hmac():
    timestamp, sign = dingtalk_sign(SECRET, now_ms=1_577_262_236_757)

    digest = hmac.new(SECRET.encode(), f"1577262236757\n{SECRET}".encode(), hashlib.sha256).digest()
    assert timestamp == 1_577_262_236_757
    assert sign == urllib.parse.quote_plus(base64.b64encode(digest).decode())
