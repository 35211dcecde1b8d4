"""Function Compute entry points: `initialize(context)` once per instance, `handler(event, context)` per range."""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from common.deadline import Deadline
from common.errors import ConfigError, SinkError
from processor.backfill.scope import event_scope
from processor.credentials import resolve_credentials
from processor.event import TriggerEvent
from processor.kafka.producer import TOPIC_CHECK_SECONDS
from processor.runtime import Runtime

log = logging.getLogger("processor")

_runtime: Runtime | None = None
# Collections of the middle generation per full collection (Python's default: 10).
FULL_COLLECTION_EVERY = 100


def initialize(context: Any = None) -> Runtime:
    """FC initializer: validate the configuration, check both topics exist, build the producer (once).

    A missing topic fails here, named with how to create it: every invocation would otherwise fail on it after
    a long wait. A Kafka that cannot be reached is only logged, and fails the invocations that need it.
    """
    global _runtime
    # A range allocates records by the million, and every tenth collection of the middle generation was a full
    # one, traversing the instance's modules and clients each time: 5 took 0.13 s of a 200,000-record range's
    # 1.3 CPU s. A tenth as many still free what cycles an invocation leaves (a dropped producer among them).
    first, second, _ = gc.get_threshold()
    gc.set_threshold(first, second, FULL_COLLECTION_EVERY)
    runtime = Runtime.from_env(os.environ)
    logging.getLogger().setLevel(runtime.settings.runtime.log_level)
    kafka = runtime.settings.kafka
    try:
        # Connecting early also keeps the producer's start out of the first invocation.
        runtime.sink.check_topics(kafka.topic, kafka.dlq_topic, Deadline.after(TOPIC_CHECK_SECONDS))
    except ConfigError:
        runtime.close(0)
        raise
    except SinkError as exc:
        # The text only: a log record keeping the exception would keep its frames' producer (and its retries) alive.
        log.error("%s; the topics are checked again at the first invocation", str(exc))
    if kafka.delivery_mode == "exactly-once":
        # Exactly-once produces through one transactional producer per shard, built when a shard is invoked.
        runtime.sink.close(0)
    _runtime = runtime
    return runtime


def handler(event: bytes | str, context: Any = None) -> dict[str, Any]:
    """FC handler for the SLS trigger: deliver [beginCursor, endCursor) of one shard to Kafka.

    Returns the run's summary; raises (so the trigger retries) when anything was not delivered.
    """
    runtime = _runtime or initialize(context)
    trigger = TriggerEvent.from_json(event)
    creds = resolve_credentials(context, os.environ)
    # A backfill fanned out through FC (`backfill --via-fc`) names its job: its checkpoints are the job's.
    scope = event_scope(trigger)
    return runtime.process(trigger, creds, function_timeout(context), scope=scope).as_dict()


def function_timeout(context: Any) -> float | None:
    function = getattr(context, "function", None)
    timeout = getattr(function, "timeout", None)
    return float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None
