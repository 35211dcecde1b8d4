"""HTTP channels: a generic JSON webhook and a DingTalk group robot (markdown, optionally signed).

The webhook carries the notification's id as `Idempotency-Key`, so a receiver can drop the one repeat the
outbox allows. HTTP says what is worth retrying: 408, 429 and 5xx are, other 4xx are not, and neither are
redirects (a POST must not silently turn into a GET elsewhere). DingTalk answers 200 also when it refuses, with
an `errcode`: only "busy" and "too fast" are retried.

Environment proxies are not used, only the channel's `proxy`: the dev stack's `HTTP_PROXY` points at the SLS
emulator, which is no way to reach a chat robot.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from alerting.channels import render
from alerting.channels.settings import Section
from alerting.notification import Notification, SendResult

REPLY_CHARS = 2000  # a reply goes into the alert's history; an HTML error page need not go in whole
RETRYABLE_STATUS = frozenset({408, 429})
# DingTalk's errcodes worth another try: -1 system busy, 130101 and 410100 more than 20 messages a minute.
DINGTALK_RETRYABLE = frozenset({-1, 130101, 410100})
USER_AGENT = "sls-kafka-processor-alerts/1"


@dataclass(frozen=True)
class HttpConfig:
    """What every HTTP channel has: where, how long to wait, which CA, which proxy."""

    KEYS: ClassVar[frozenset[str]] = frozenset({"url", "timeout", "ca_file", "proxy"})

    url: str
    timeout: float = 10.0
    ca_file: Path | None = None
    proxy: str | None = None

    @staticmethod
    def read(section: Section) -> dict[str, Any]:
        url = section.string("url", required=True)
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise section.error("url", f"expected an http:// or https:// URL, got {url!r}")
        return {"url": url, "timeout": section.number("timeout", 10.0), "ca_file": section.path("ca_file"),
                "proxy": section.string("proxy")}


@dataclass(frozen=True)
class WebhookConfig(HttpConfig):
    headers: tuple[tuple[str, str], ...] = ()  # e.g. Authorization, from `${env:...}`

    KEYS: ClassVar[frozenset[str]] = HttpConfig.KEYS | {"headers"}

    @classmethod
    def from_section(cls, section: Section) -> WebhookConfig:
        return cls(**cls.read(section), headers=tuple(section.mapping("headers").items()))


@dataclass(frozen=True)
class DingTalkConfig(HttpConfig):
    secret: str | None = None  # the robot's "sign" security setting (SEC...)
    at_mobiles: tuple[str, ...] = ()
    at_all: bool = False
    max_samples: int = 3
    template: Path | None = None  # markdown

    KEYS: ClassVar[frozenset[str]] = HttpConfig.KEYS | {"secret", "at_mobiles", "at_all", "max_samples", "template"}

    @classmethod
    def from_section(cls, section: Section) -> DingTalkConfig:
        template = section.string("template")
        return cls(**cls.read(section), secret=section.string("secret"), at_mobiles=section.strings("at_mobiles"),
                   at_all=section.boolean("at_all", False), max_samples=section.number("max_samples", 3, integer=True),
                   template=section.relative(template) if template else None)


class WebhookChannel:
    """POSTs the notification as JSON (see `payload`)."""

    def __init__(self, name: str, config: WebhookConfig) -> None:
        self.name = name
        self.config = config

    def send(self, notification: Notification) -> SendResult:
        headers = {**dict(self.config.headers), "Idempotency-Key": notification.id}
        return _post(self.config, self.config.url, payload(notification), headers, _by_status)


class DingTalkChannel:
    """Posts a markdown message to a DingTalk robot, signed when the robot has a secret."""

    def __init__(self, name: str, config: DingTalkConfig) -> None:
        self.name = name
        self.config = config
        self._template = render.load(name, "template", config.template, "dingtalk.md.j2")

    def send(self, notification: Notification) -> SendResult:
        cfg = self.config
        try:
            text = self._template.render(notification, cfg.max_samples)
        except Exception as exc:  # a user's template failing on this notification: sending again won't help
            return SendResult(False, False, f"template error: {type(exc).__name__}: {exc}")
        title = f"[{notification.transition.value.upper()}] {notification.rule}"
        body = {"msgtype": "markdown", "markdown": {"title": title, "text": text},
                "at": {"atMobiles": list(cfg.at_mobiles), "isAtAll": cfg.at_all}}
        url = cfg.url
        if cfg.secret:
            timestamp, sign = dingtalk_sign(cfg.secret)
            url += ("&" if urllib.parse.urlsplit(url).query else "?") + f"timestamp={timestamp}&sign={sign}"
        return _post(cfg, url, body, {}, _by_errcode)


def dingtalk_sign(secret: str, now_ms: int | None = None) -> tuple[int, str]:
    """DingTalk's signature: base64 of HMAC-SHA256(key=secret, "timestamp\\nsecret"), URL-encoded."""
    timestamp = int(time.time() * 1000) if now_ms is None else now_ms
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return timestamp, urllib.parse.quote_plus(base64.b64encode(digest))


def payload(n: Notification) -> dict[str, Any]:
    """The notification as JSON; a sample record that is not UTF-8 goes as base64 instead of being altered."""
    samples = []
    for s in n.samples:
        try:
            record: dict[str, str] = {"record": s.record.decode()}
        except UnicodeDecodeError:
            record = {"record_base64": base64.b64encode(s.record).decode()}
        samples.append({**record, "project": s.project, "logstore": s.logstore, "shard": s.shard,
                        "cursor": s.cursor, "event_time": s.event_time})
    return {
        "id": n.id, "rule": n.rule, "severity": n.severity, "transition": n.transition.value,
        "description": n.description, "value": n.value, "threshold": n.threshold, "comparison": n.comparison,
        "window_start": n.window_start, "window_end": n.window_end,
        "groups": [{"group": g.group, "value": g.value} for g in n.groups],
        "history": [{"window_start": start, "value": value} for start, value in n.history],
        "samples": samples, "labels": dict(n.labels), "firing_id": n.firing_id,
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None  # the 3xx comes back as an HTTPError and is classed like any other answer


def _post(cfg: HttpConfig, url: str, body: dict[str, Any], headers: dict[str, str],
          classify: Callable[[int, str], SendResult]) -> SendResult:
    data = json.dumps(body, ensure_ascii=False).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT, **headers})
    proxies = {"http": cfg.proxy, "https": cfg.proxy} if cfg.proxy else {}
    context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies), _NoRedirect,
                                         urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=cfg.timeout) as response:
            status, text = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode(errors="replace")
    except OSError as exc:  # URLError included: it wraps what went wrong before an answer came
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):  # configuration: no retry makes it trusted
            return SendResult(False, False, f"TLS failed: {reason}")
        return SendResult(False, True, f"{type(reason).__name__}: {reason}")  # refused, timed out, reset
    return classify(status, text)


def _reply(status: int, text: str) -> str:
    return f"HTTP {status} {text[:REPLY_CHARS]}".rstrip()


def _by_status(status: int, text: str) -> SendResult:
    if 200 <= status < 300:
        return SendResult(True, False, _reply(status, text))
    return SendResult(False, status in RETRYABLE_STATUS or status >= 500, _reply(status, text))


def _by_errcode(status: int, text: str) -> SendResult:
    if status != 200:
        return _by_status(status, text)
    try:
        errcode = json.loads(text).get("errcode")
    except (ValueError, AttributeError):
        errcode = None
    if not isinstance(errcode, int):
        return SendResult(False, False, _reply(status, text) + " (not DingTalk's answer: no errcode)")
    if errcode == 0:
        return SendResult(True, False, _reply(status, text))
    return SendResult(False, errcode in DINGTALK_RETRYABLE, _reply(status, text))
