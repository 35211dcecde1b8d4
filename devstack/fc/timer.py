"""The timer trigger of a deployed function: `cronExpression: "@every <N><s|m|h>"` invokes it at that cadence.

The event is FC's timer event (`triggerTime`, `triggerName`, `payload`); invocations are synchronous and a
failed one is not retried, as FC's timer does: the next tick is the retry.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from devstack.fc.instances import Outcome, stamp
from devstack.fc.spec import TimerSpec

log = logging.getLogger(__name__)


class TimerTrigger:
    def __init__(self, spec: TimerSpec, invoke: Callable[[bytes], Outcome], note: Callable[[str], None]) -> None:
        self.spec, self.invoke, self.note = spec, invoke, note
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"timer-{spec.name}", daemon=True)

    def start(self) -> TimerTrigger:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        next_tick = time.monotonic() + self.spec.every
        while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
            # A tick that overran the cadence is not made up for: FC's timer skips, it does not queue.
            while next_tick <= time.monotonic():
                next_tick += self.spec.every
            event = {"triggerTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "triggerName": self.spec.name,
                     "payload": self.spec.payload}
            try:
                outcome = self.invoke(json.dumps(event).encode())
            except Exception:
                log.exception("timer %s: the invocation could not be made", self.spec.name)
                continue
            error = (outcome.error or {}).get("errorMessage", "")
            self.note(f"{stamp()} {outcome.request_id} [TIMER] {self.spec.name}: "
                      f"{'success' if outcome.ok else 'failed'} {error}".rstrip())
