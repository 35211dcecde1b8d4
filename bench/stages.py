"""Where the time goes: the function's own at-least-once run (`RangeLoop`, as the FC handler builds it), with a
clock around each part it calls.

Nothing is re-implemented here: the worker starts the function as for (c) and invokes it once per shard; the
parts are wrapped at class level for the run, and each wrapper adds the time spent inside it to its stage:

* pull: the SDK's `pull_logs` (the HTTP request and reading the body, the emulator's time to serve it included),
  less its decompression;
* decompress: lz4 of the body (the SDK's `Compressor.decompress_response`);
* decode: protobuf parse into LogGroup objects (the SDK's `PullLogResponse._parse_loggroup_list`);
* project: `Projector.project_group`;
* produce: `KafkaSink.produce_all` (librdkafka enqueue, headers included, waits for queue room included);
* acks: `KafkaSink.poll` and `KafkaSink.wait` (serving delivery reports, waiting for pages to be confirmed).

These are busy seconds per stage, not a partition of the run: pull, decompress and decode run in the source's
prefetch thread while the main thread projects and produces, so the stages overlap and may add up to more than
the run's wall time (the worker's `wall_seconds`, reported beside them).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aliyun.log import LogClient, logclient
from aliyun.log.pulllog_response import PullLogResponse

from bench.methods import Outcome, Spec, ours
from processor.kafka.producer import KafkaSink
from processor.projection import Projector

STAGES = ("pull", "decompress", "decode", "project", "produce", "acks")
# (owner, attribute, stage): every part of the loop that is timed.
_PARTS: tuple[tuple[Any, str, str], ...] = (
    (LogClient, "pull_logs", "pull"),
    (logclient.Compressor, "decompress_response", "decompress"),
    (PullLogResponse, "_parse_loggroup_list", "decode"),
    (Projector, "project_group", "project"),
    (KafkaSink, "produce_all", "produce"),
    (KafkaSink, "poll", "acks"),
    (KafkaSink, "wait", "acks"),
)


def _timed(seconds: Counter[str], stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            # Each stage runs in one thread only (pull, decompress, decode in the prefetch thread), so no two
            # threads add to one key.
            seconds[stage] += time.perf_counter() - started
    return wrapper


@contextmanager
def timing(seconds: Counter[str]) -> Iterator[None]:
    """Wrap every part of `_PARTS` for the block, adding each call's time to `seconds[stage]`."""
    originals = [(owner, name, owner.__dict__[name]) for owner, name, _ in _PARTS]
    try:
        for owner, name, stage in _PARTS:
            attr = owner.__dict__[name]
            fn = _timed(seconds, stage, attr.__func__ if isinstance(attr, staticmethod) else attr)
            setattr(owner, name, staticmethod(fn) if isinstance(attr, staticmethod) else fn)
        yield
    finally:
        for owner, name, attr in originals:
            setattr(owner, name, attr)


def breakdown(spec: Spec) -> Outcome:
    """(c) again, timed by stage: the instance was started by the worker (`STARTS`), as for (c)."""
    seconds: Counter[str] = Counter()
    with timing(seconds):
        outcome = ours(spec)
    # The decompression ran inside the pull's clock: report the two apart.
    seconds["pull"] -= seconds["decompress"]
    outcome.details["stage_seconds"] = {s: round(seconds[s], 6) for s in STAGES}
    return outcome
