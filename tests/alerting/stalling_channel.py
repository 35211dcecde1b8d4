"""A channel for the SIGKILL test: it says it is sending (a marker file), then hangs until the process is killed."""

import time
from collections.abc import Mapping
from pathlib import Path


class Stalling:
    name = "stalling"

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def send(self, notification):
        self.marker.write_text(notification.id)
        time.sleep(120)
        raise AssertionError("the test kills this process while it sends")


def factory(env: Mapping[str, str]) -> Stalling:
    return Stalling(Path(env["STALL_MARKER"]))
