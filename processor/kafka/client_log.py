"""librdkafka's own log, through Python logging (the client's `logger` setting) with its repeats dropped."""

from __future__ import annotations

import logging
import re
import time

_ELAPSED = re.compile(r"after \d+ms")


class _OncePerInterval(logging.Filter):
    """Lets each distinct librdkafka line through once a minute: a failing connection repeats it every retry."""

    INTERVAL = 60.0
    MAX_KEPT = 1000

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # confluent-kafka logs (facility, client name, text); the text names the broker and the cause, and how
        # long the attempt took, which differs at every retry.
        text = str(record.args[2]) if isinstance(record.args, tuple) and len(record.args) == 3 else str(record.msg)
        key = _ELAPSED.sub("", text)
        now = time.monotonic()
        if now - self._last.get(key, -self.INTERVAL) < self.INTERVAL:
            return False
        if len(self._last) >= self.MAX_KEPT:
            self._last.clear()
        self._last[key] = now
        return True


# librdkafka's log (the `logger` setting), instead of its raw lines on stderr.
librdkafka_log = logging.getLogger("processor.librdkafka")
librdkafka_log.addFilter(_OncePerInterval())
