"""The real SMTP server of the dev stack, on free ports, for the channel tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.smtp import SmtpServer
from tests.alerting.channels.channel_support import DEFERRED, PASSWORD, REFUSED, USERNAME


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    """A started server offering AUTH (USERNAME/PASSWORD) that answers 550 to REFUSED and 451 to DEFERRED."""
    server = SmtpServer(tmp_path / "smtp", username=USERNAME, password=PASSWORD, refuse=[REFUSED],
                        defer=[DEFERRED]).start()
    yield server
    server.stop()
