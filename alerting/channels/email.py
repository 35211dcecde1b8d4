"""Email over SMTP: plain, STARTTLS or implicit TLS, with a login, to several recipients, text and HTML.

The `Message-ID` comes from the notification's id, so the one repeat the outbox allows (a crash between the
server's accept and the record of it) carries the same id and mail clients fold it; a resolved, repeat or
correction mail names its firing in `In-Reply-To`/`References`, so the thread shows the alert's life.

How a failure is classed follows SMTP's own codes: 4xx is temporary, 5xx permanent. A connection refused, a
timeout or a dropped connection is temporary too. One recipient refused with 5xx does not stop the mail to the
others; one refused with 4xx stops the whole mail (RSET), so that the retry cannot deliver twice to the rest.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.errors import MessageDefect, MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import ClassVar, Literal, cast

from alerting.channels import render
from alerting.channels.settings import ChannelConfigError, Section
from alerting.notification import Notification, SendResult, Transition

Security = Literal["plain", "starttls", "tls"]
DEFAULT_PORTS = {"plain": 25, "starttls": 587, "tls": 465}
MSG_ID_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@dataclass(frozen=True)
class EmailConfig:
    """An email channel's settings; `from_section` reads and checks them from the rules file."""

    KEYS: ClassVar[frozenset[str]] = frozenset({
        "host", "port", "security", "username", "password", "from", "to", "timeout", "ca_file", "max_samples",
        "templates"})

    host: str
    sender: str
    to: tuple[str, ...]
    security: Security = "starttls"
    port: int = 587
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    ca_file: Path | None = None  # a private CA (or the dev server's certificate) instead of the system's
    max_samples: int = 5
    subject_template: Path | None = None
    text_template: Path | None = None
    html_template: Path | None = None

    def __post_init__(self) -> None:
        # Also for a config built in code rather than read by from_section.
        if self.security not in DEFAULT_PORTS:
            msg = f"security: expected one of plain, starttls, tls, got {self.security!r}"
            raise ChannelConfigError(msg)
        if not self.to:
            msg = "to: needs at least one recipient"
            raise ChannelConfigError(msg)

    @classmethod
    def from_section(cls, section: Section) -> EmailConfig:
        security = section.choice("security", ("plain", "starttls", "tls"), "starttls")
        username, password = section.string("username"), section.string("password")
        if (username is None) != (password is None):
            raise section.error("password" if password is None else "username",
                                "username and password go together: set both or neither")
        sender = section.string("from", required=True)
        for key, address in [("from", sender), *(("to", a) for a in section.strings("to", required=True))]:
            try:
                Address(addr_spec=address_of(address))
            except (ValueError, IndexError, MessageError, MessageDefect) as exc:
                raise section.error(key, f"{address!r} is not an email address ({exc})") from None
        templates = section.mapping("templates")
        unknown = sorted(set(templates) - {"subject", "text", "html"})
        if unknown:
            key = f"templates.{unknown[0]}"
            raise section.error(key, "unknown template; expected subject, text or html")
        return cls(
            host=section.string("host", required=True), sender=sender, to=section.strings("to", required=True),
            security=cast(Security, security),
            port=section.number("port", DEFAULT_PORTS[security], integer=True),
            username=username, password=password, timeout=section.number("timeout", 30.0),
            ca_file=section.path("ca_file"), max_samples=section.number("max_samples", 5, integer=True),
            subject_template=_template_path(section, templates, "subject"),
            text_template=_template_path(section, templates, "text"),
            html_template=_template_path(section, templates, "html"),
        )


def _template_path(section: Section, templates: dict[str, str], kind: str) -> Path | None:
    return section.relative(templates[kind]) if kind in templates else None


def address_of(mailbox: str) -> str:
    """The bare address of `Name <address>` (the envelope wants it bare), or `mailbox` itself."""
    return parseaddr(mailbox)[1] or mailbox


class EmailChannel:
    """Sends a notification as one email to every recipient; never raises, answers with a `SendResult`."""

    def __init__(self, name: str, config: EmailConfig) -> None:
        self.name = name
        self.config = config
        self._subject = render.load(name, "templates.subject", config.subject_template, "email_subject.j2")
        self._text = render.load(name, "templates.text", config.text_template, "email.txt.j2")
        self._html = render.load(name, "templates.html", config.html_template, "email.html.j2", html=True)

    def message(self, n: Notification) -> EmailMessage:
        """The email for `n`, as it will be sent (rendering errors propagate)."""
        cfg = self.config
        msg = EmailMessage()
        # A template may span lines; a header may not.
        msg["Subject"] = " ".join(self._subject.render(n, cfg.max_samples).split())
        msg["From"] = cfg.sender
        msg["To"] = ", ".join(cfg.to)
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = message_id(n.id, cfg.sender)
        if n.firing_id and n.transition is not Transition.FIRING:
            msg["In-Reply-To"] = msg["References"] = message_id(n.firing_id, cfg.sender)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the alert sender
        msg["X-Alert-Rule"], msg["X-Alert-Severity"] = n.rule, n.severity
        msg["X-Alert-Transition"] = n.transition.value
        msg.set_content(self._text.render(n, cfg.max_samples))
        msg.add_alternative(self._html.render(n, cfg.max_samples), subtype="html")
        return msg

    def send(self, notification: Notification) -> SendResult:
        try:
            msg = self.message(notification)
        except Exception as exc:  # a user's template failing on this notification: sending again won't help
            return SendResult(False, False, f"template error: {type(exc).__name__}: {exc}")
        smtp = None
        try:
            smtp = self._connect()
            return self._transact(smtp, msg)
        except (OSError, smtplib.SMTPException) as exc:
            return _failure(exc)
        finally:
            if smtp is not None:
                _quit(smtp)

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        smtp: smtplib.SMTP
        if cfg.security == "tls":
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        try:
            if cfg.security == "starttls":
                smtp.starttls(context=context)  # raises SMTPNotSupportedError rather than going on in clear
            if cfg.username is not None:
                smtp.login(cfg.username, cfg.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _transact(self, smtp: smtplib.SMTP, msg: EmailMessage) -> SendResult:
        cfg = self.config
        smtp.ehlo_or_helo_if_needed()  # STARTTLS forgets the first EHLO, and login() is what says it again
        code, reply = smtp.mail(address_of(cfg.sender))
        if code != 250:
            smtp.rset()
            return SendResult(False, code < 500, _reply(code, reply))
        accepted, refused = [], []
        for rcpt in cfg.to:
            code, reply = smtp.rcpt(address_of(rcpt))
            (accepted if code in (250, 251) else refused).append((rcpt, code, reply))
        temporary = [r for r in refused if r[1] < 500]
        if temporary or not accepted:
            smtp.rset()
            text = "; ".join(f"{rcpt}: {_reply(code, reply)}" for rcpt, code, reply in refused)
            return SendResult(False, bool(temporary), text)
        # smtplib leaves bytes as they are: the lines must already end in CRLF, as SMTP wants.
        code, reply = smtp.data(msg.as_bytes(policy=SMTP_POLICY))
        if code != 250:
            return SendResult(False, code < 500, _reply(code, reply))
        text = _reply(code, reply)
        if refused:
            text += "; refused for good: " + "; ".join(f"{r}: {_reply(c, t)}" for r, c, t in refused)
        return SendResult(True, False, text)


def _failure(exc: OSError | smtplib.SMTPException) -> SendResult:
    if isinstance(exc, smtplib.SMTPResponseException):  # refused at connect, EHLO, STARTTLS, AUTH or DATA
        return SendResult(False, exc.smtp_code < 500, _reply(exc.smtp_code, exc.smtp_error))
    if isinstance(exc, smtplib.SMTPNotSupportedError):  # no STARTTLS or no AUTH offered: configuration
        return SendResult(False, False, f"the server does not support it: {exc}")
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return SendResult(False, False, f"TLS failed: {exc}")  # a bad certificate, or tls against a plain port
    return SendResult(False, True, f"{type(exc).__name__}: {exc}")  # refused, timed out, dropped


def _quit(smtp: smtplib.SMTP) -> None:
    # The outcome is known by now; a QUIT that fails must not turn a delivered mail into a retried one.
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def message_id(notification_id: str, sender: str) -> str:
    """`<id@sender's domain>`: the id itself when it is a valid local part, else its SHA-256."""
    local = notification_id if MSG_ID_LOCAL.fullmatch(notification_id) else _digest(notification_id)
    domain = address_of(sender).rpartition("@")[2] or "sls-kafka-processor.invalid"
    return f"<{local}@{domain}>"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _reply(code: int, text: bytes | str) -> str:
    return f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"

