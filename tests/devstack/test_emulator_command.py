"""`sls-kafka emulator`: the emulator alone in the foreground, reachable by the SDK, stopped by SIGTERM."""

import re
import signal
import subprocess
import sys
from pathlib import Path

from aliyun.log import LogClient

REPO = Path(__file__).resolve().parents[2]


def test_emulator_command_serves_the_sdk_until_sigterm(tmp_path, monkeypatch):
    proc = subprocess.Popen([sys.executable, "-m", "processor", "emulator", "--port", "0", "--data-dir",
                             str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        first, second = proc.stdout.readline(), proc.stdout.readline()
        assert first.startswith("SLS emulator listening on http://127.0.0.1:")
        proxy = re.search(r"HTTP_PROXY=(\S+)", second)[1]
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("http_proxy", proxy)
        client = LogClient("cn-shanghai.log.emulator", "any-key", "any-secret")
        client.create_project("cli-check", "from the emulator command test")
        assert "cli-check" in [p["projectName"] for p in client.list_project().get_projects()]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
