"""Identify and stop background processes by PID only (never by name), Linux /proc based."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRef:
    """A PID plus what makes it *that* process, so a recycled PID is never signalled.

    ``start_ticks`` is the start time from /proc/<pid>/stat (field 22): a PID reused by another
    process gets a different one.
    """

    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        """Capture the identity of a running process."""
        ticks = _start_ticks(pid)
        if ticks is None:
            msg = f"process {pid} is not running"
            raise ProcessLookupError(msg)
        return cls(pid, ticks)

    def is_running(self, cmdline_marker: str = "") -> bool:
        """Tell whether this very process still runs (zombies count as gone).

        ``cmdline_marker``, if given, must also appear in its command line.
        """
        if _start_ticks(self.pid) != self.start_ticks or _state(self.pid) in (None, "Z", "X"):
            return False
        return not cmdline_marker or cmdline_marker in cmdline(self.pid)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; returns once the process is gone."""
        if not self.is_running():
            return
        self._signal(signal.SIGTERM)
        if self._wait_gone(grace):
            return
        self.kill()

    def kill(self) -> None:
        """SIGKILL and wait until the process is gone."""
        if self.is_running():
            self._signal(signal.SIGKILL)
            self._wait_gone(10.0)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


def cmdline(pid: int) -> str:
    """Return the process' command line with spaces between arguments ('' if gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; everything after the last ')' is fixed.
    return stat[stat.rindex(")") + 2 :].split()


def _state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def _start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    # Field 22 of stat, counted from field 3 (the state) here.
    return int(fields[19]) if fields else None
