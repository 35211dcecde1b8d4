"""`sls-kafka dev mail` reads what the dev stack's SMTP server stored, from another process."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from alerting.channels import EmailChannel, EmailConfig
from devstack import stack
from devstack.smtp import SmtpServer
from tests.alerting.channels.channel_support import FIRING, SENDER, TO

pytestmark = pytest.mark.slow  # runs the CLI as a subprocess

REPO = Path(__file__).resolve().parents[2]


def dev_mail(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processor", "dev", "mail", *args, "--state-dir", str(state_dir)],
                          cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)


def test_dev_mail_lists_what_the_server_received_and_prints_one_with_its_text_part(tmp_path):
    state_dir = tmp_path / "dev"
    server = SmtpServer(stack.smtp_state_dir(state_dir)).start()
    try:
        config = EmailConfig(host="127.0.0.1", port=server.port, sender=SENDER, to=TO, ca_file=server.cert_path)
        assert EmailChannel("ops-mail", config).send(FIRING).delivered
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "me@example.com", "ops@example.com", "second mail"
        message.set_content("text part")
        message.add_alternative("<p>html part</p>", subtype="html")
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.send_message(message, to_addrs=["ops@example.com", "bcc@example.com"])
    finally:
        server.stop()  # what was stored stays readable after the server stops

    listing = dev_mail(state_dir=state_dir)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("  1  ")
    assert f"{SENDER} -> {', '.join(TO)}  [FIRING] speeding-count (critical): 73 > 50" in lines[0]
    assert lines[1].endswith("me@example.com -> ops@example.com, bcc@example.com  second mail")

    alert = dev_mail("1", state_dir=state_dir)
    assert alert.returncode == 0, alert.stderr
    assert "Message-ID: <speeding-count.zone=north.1764662400.firing@fleet.example.com>" in alert.stdout
    assert "Value:     73 > 50 (the threshold)" in alert.stdout
    assert "<table" not in alert.stdout  # the text part, not the HTML one

    missing = dev_mail("3", state_dir=state_dir)
    assert missing.returncode == 1
    assert "no message 3; there are 2" in missing.stderr
