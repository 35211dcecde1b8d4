"""A real SMTP server for the local stack (aiosmtpd) that keeps every message it accepts as a .eml file.

One listener speaks plain SMTP and offers STARTTLS; a second one speaks implicit TLS (as port 465 does). Both
use a self-signed certificate made at start for `localhost` and 127.0.0.1, written beside the mail so that a
client can verify against it instead of turning verification off. AUTH (PLAIN, LOGIN) is offered when a
username is set, also before STARTTLS, so that the channel's `security: plain` with a login can be exercised.

Messages land in ``<mail_dir>/<ns>-<pid>-<seq>.eml`` (written under a temporary name, then renamed), so
`sls-kafka dev mail` in another process lists them in arrival order and never reads half a message. The
envelope is kept in ``X-MailFrom`` / ``X-RcptTo`` headers in front of the message, as aiosmtpd's own
Message handler does: the recipients a server was given are not always those in the headers.

aiosmtpd and cryptography (the `devstack` extra) are imported only when a server starts: `dev mail`, `dev
status` and every other command of `sls-kafka` import this module and work without them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import email
import email.policy
import ipaddress
import itertools
import json
import os
import signal
import ssl
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

from devstack.kafka import free_port

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
INFO_NAME = "server.json"


@dataclass(frozen=True)
class StoredMail:
    """A message as the server received it: its envelope, and the message itself."""

    path: Path
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    def text(self) -> str:
        """The text/plain part (the whole body for a single-part message), with lines ending in \\n."""
        return self._part("plain")

    def html(self) -> str:
        """The text/html part, or '' when there is none."""
        return self._part("html")

    def _part(self, subtype: str) -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        # Stored as received, with SMTP's CRLF line ends.
        return part.get_content().replace("\r\n", "\n") if part is not None else ""


def read_mail(mail_dir: Path) -> list[StoredMail]:
    """Every stored message, oldest first."""
    mails = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = cast(EmailMessage, email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
        rcpts = tuple(r.strip() for r in str(message.get("X-RcptTo", "")).split(",") if r.strip())
        mails.append(StoredMail(path, str(message.get("X-MailFrom", "")), rcpts, message))
    return mails


def read_info(directory: Path) -> dict[str, Any] | None:
    """What a running server wrote about itself (host, ports, certificate, mail dir), or None."""
    try:
        return dict(json.loads((directory / INFO_NAME).read_text()))
    except (OSError, ValueError):
        return None


class _Store:
    """aiosmtpd handler: refuses (550) or defers (451) the recipients it was told to, stores the rest."""

    def __init__(self, mail_dir: Path, refuse: frozenset[str], defer: frozenset[str]) -> None:
        self._dir = mail_dir
        self._refuse = refuse
        self._defer = defer
        self._seq = itertools.count()
        self._lock = threading.Lock()  # the two listeners run in two threads

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.lower() in self._refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address.lower() in self._defer:
            return f"451 4.3.0 <{address}>: Temporary lookup failure, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        head = f"X-MailFrom: {envelope.mail_from}\r\nX-RcptTo: {', '.join(envelope.rcpt_tos)}\r\n".encode()
        with self._lock:
            name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}"
        tmp = self._dir / f".{name}.tmp"
        tmp.write_bytes(head + envelope.original_content)
        tmp.replace(self._dir / f"{name}.eml")
        return f"250 2.0.0 Ok: stored as {name}"


def _authenticator(username: str, password: str) -> Any:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == username and auth_data.password.decode() == password)
        # handled=False: aiosmtpd answers a failure with 535 itself; success keeps the login for the session.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)
    return check


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for `localhost` and 127.0.0.1, as PEM files; a dev stack may stay up for weeks."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    alt = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=90))
            .add_extension(alt, critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class SmtpServer:
    """The two listeners on 127.0.0.1 (port 0: a free one); `start()` returns once both answer."""

    def __init__(self, directory: Path, port: int = 0, tls_port: int = 0, username: str | None = None,
                 password: str | None = None, refuse: Sequence[str] = (), defer: Sequence[str] = ()) -> None:
        self.directory = directory
        self.mail_dir = directory / "mail"
        self._ports = (port, tls_port)
        self._auth = _authenticator(username, password or "") if username else None
        self._refuse = frozenset(r.lower() for r in refuse)
        self._defer = frozenset(r.lower() for r in defer)
        self._controllers: list[Any] = []
        self.port = self.tls_port = 0

    @property
    def cert_path(self) -> Path:
        return self.directory / CERT_NAME

    def start(self) -> SmtpServer:
        try:
            from aiosmtpd.controller import Controller
        except ModuleNotFoundError as exc:
            msg = f"the dev SMTP server needs {exc.name}: pip install 'sls-kafka-processor[devstack]'"
            raise RuntimeError(msg) from exc
        # aiosmtpd itself sets the attribute it deprecates on every AUTH; nothing of ours to change.
        warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        cert, key = make_certificate(self.directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        handler = _Store(self.mail_dir, self._refuse, self._defer)
        auth: dict[str, Any] = {"authenticator": self._auth, "auth_require_tls": False} if self._auth else {}
        # aiosmtpd cannot bind port 0: it connects to the port it was given to see that it serves. A restart
        # keeps the ports it had, as a real server coming back would.
        port, tls_port = (p or free_port() for p in (self.port or self._ports[0], self.tls_port or self._ports[1]))
        starttls = Controller(handler, hostname="127.0.0.1", port=port, tls_context=context, **auth)
        implicit = Controller(handler, hostname="127.0.0.1", port=tls_port, ssl_context=context, **auth)
        for controller in (starttls, implicit):
            controller.start()
            self._controllers.append(controller)
        self.port, self.tls_port = port, tls_port
        info = {"host": "127.0.0.1", "port": self.port, "tls_port": self.tls_port, "cert": str(cert),
                "mail_dir": str(self.mail_dir), "username": self._auth is not None}
        (self.directory / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
        return self

    def stop(self) -> None:
        while self._controllers:
            self._controllers.pop().stop()

    def mail(self) -> list[StoredMail]:
        return read_mail(self.mail_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.smtp",
                                     description="Run the dev stack's SMTP server in the foreground.")
    parser.add_argument("--dir", type=Path, required=True, help="where the certificate and the mail go")
    parser.add_argument("--port", type=int, default=2525, help="plain SMTP with STARTTLS (default: %(default)s)")
    parser.add_argument("--tls-port", type=int, default=2465, help="implicit TLS (default: %(default)s)")
    parser.add_argument("--username", help="require nothing, but offer AUTH accepting this user")
    parser.add_argument("--refuse", action="append", default=[], help="answer RCPT TO with 550 for this address")
    parser.add_argument("--defer", action="append", default=[], help="answer RCPT TO with 451 for this address")
    args = parser.parse_args(argv)
    password = os.environ.get("SMTP_DEV_PASSWORD", "")  # not an option: it would show in `ps`
    server = SmtpServer(args.dir, args.port, args.tls_port, args.username, password, args.refuse, args.defer).start()
    print(f"SMTP on 127.0.0.1:{server.port} (STARTTLS), implicit TLS on 127.0.0.1:{server.tls_port}; "
          f"mail in {server.mail_dir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
