"""Function Compute entry points: `initialize(context)` once per instance, `handler(event, context)` per range."""

from __future__ import annotations

import logging
import os
from typing import Any

from processor.credentials import resolve_credentials
from processor.event import TriggerEvent
from processor.runtime import Runtime

log = logging.getLogger("processor")

_runtime: Runtime | None = None


def initialize(context: Any = None) -> Runtime:
    """FC initializer: parse and validate the configuration, build the producer (heavy work, once)."""
    global _runtime
    _runtime = Runtime.from_env(os.environ)
    logging.getLogger().setLevel(_runtime.settings.runtime.log_level)
    if _runtime.settings.kafka.delivery_mode == "at-least-once":
        _runtime.sink.producer  # noqa: B018  (connecting early keeps it out of the first invocation)
    return _runtime


def handler(event: bytes | str, context: Any = None) -> dict[str, Any]:
    """FC handler for the SLS trigger: deliver [beginCursor, endCursor) of one shard to Kafka.

    Returns the run's summary; raises (so the trigger retries) when anything was not delivered.
    """
    runtime = _runtime or initialize(context)
    trigger = TriggerEvent.from_json(event)
    creds = resolve_credentials(context, os.environ)
    return runtime.process(trigger, creds, _function_timeout(context)).as_dict()


def _function_timeout(context: Any) -> float | None:
    function = getattr(context, "function", None)
    timeout = getattr(function, "timeout", None)
    return float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None
