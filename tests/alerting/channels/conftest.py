"""The real SMTP server of the dev stack, on free ports, for the channel tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.smtp import SmtpServer

USERNAME = "alerts"
PASSWORD = "s3cret pass"  # a space, as real passwords may have
REFUSED = "nobody@example.com"


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    """A started server offering AUTH (USERNAME/PASSWORD) that answers 550 to REFUSED; stopped after the test."""
    server = SmtpServer(tmp_path / "smtp", username=USERNAME, password=PASSWORD, refuse=[REFUSED]).start()
    yield server
    server.stop()
