"""Small fakes of the delivery loop's edges, for the fast tier: an SLS shard (`SlsClient`), Kafka (`Sink` and the
transactional sink's surface) and checkpoint stores. Pages are the SDK's own `PullLogResponse` over protobuf
`LogGroupList` bytes, so the source parses what it parses in production.

Kafka's confirmations come when the fake says so (`poll` confirms a random part of what is in flight), which is
what the commit strategies must cope with; assertions are about outcomes: what reached each topic, what the store
holds, what the summary says.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aliyun.log import LogException
from aliyun.log.log_logs_pb2 import LogGroup, LogGroupList
from aliyun.log.pulllog_response import PullLogResponse
from confluent_kafka import KafkaError

from checkpoints.base import Checkpoint, CheckpointKey, merge
from checkpoints.kafka_txn import KafkaCheckpointStore
from common.cursors import cursor_position
from common.deadline import Deadline
from common.errors import SinkError
from processor.config import ProjectionConfig, SourceConfig, parse_fields
from processor.dead_letter import Provenance
from processor.delivery.loop import RangeLoop, RangeRun
from processor.event import TriggerEvent
from processor.kafka.tracking import DeliveryTracker, Undeliverable
from processor.projection import Projector
from processor.sls.retry import RetryStats, sls_retrying

TOPIC, DLQ, CKPT_TOPIC = "cars", "cars-dlq", "cars-ckpt"


def cursor_at(position: int) -> str:
    """SLS's cursor of the log group at `position` (base64 of the decimal position), written out independently."""
    return base64.b64encode(str(position).encode()).decode()


def record(i: int) -> dict[str, Any]:
    return {"speed": i % 180, "carID": 10_000 + i, "seq": i}


def projected(i: int) -> bytes:
    """The value the default projection makes of `record(i)`."""
    return orjson.dumps({"speed": i % 180, "carID": 10_000 + i})


def log_group(first: int, n: int, poison: Sequence[int] = (), pad: int = 0) -> LogGroup:
    """A group of the JSON records first..first+n-1, each with `pad` bytes of a field the projection drops; records
    in `poison` are not JSON (the projection rejects them)."""
    group = LogGroup(Topic="driving", Source="10.0.0.7")
    for i in range(first, first + n):
        log = group.Logs.add(Time=1_700_000_000 + i)
        text = "{not json" if i in poison else orjson.dumps({**record(i), "pad": "x" * pad}).decode()
        log.Contents.add(Key="content", Value=text)
    return group


class FakeShard:
    """One SLS shard of log groups, pulled through the SDK's response class; `failures` are raised by the next
    pulls, one each (None: that pull succeeds)."""

    def __init__(self, groups: Sequence[LogGroup], begin: int = 0) -> None:
        self.groups = list(groups)
        self.begin = begin  # groups before it have expired
        self.counts_asked: list[int] = []
        self.failures: list[BaseException | None] = []

    @property
    def records(self) -> int:
        return sum(len(g.Logs) for g in self.groups)

    def pull_logs(self, project_name: str, logstore_name: str, shard_id: int, cursor: str, count: int | None = None,
                  end_cursor: str | None = None, compress: bool | None = None,
                  accept_compress_type: str | None = None) -> PullLogResponse:
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        pos = cursor_position(cursor)
        if pos < self.begin:
            raise LogException("InvalidCursor", "cursor is expired", resp_status=400)
        self.counts_asked.append(count or 0)
        end = len(self.groups) if end_cursor is None else cursor_position(end_cursor)
        last = min(pos + (count or 1000), end, len(self.groups))
        body = LogGroupList(LogGroups=self.groups[pos:last]).SerializeToString()
        headers = {"x-log-count": str(last - pos), "x-log-bodyrawsize": str(len(body)),
                   "x-log-cursor": cursor_at(last)}
        return PullLogResponse(body, headers)

    def get_begin_cursor(self, project_name: str, logstore_name: str, shard_id: int) -> Any:
        return _Cursor(cursor_at(self.begin))


@dataclass
class _Cursor:
    cursor: str

    def get_cursor(self) -> str:
        return self.cursor


class _Message:
    """The part of a confluent_kafka Message a delivery report's reader uses."""

    def __init__(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._t, self._k, self._v = topic, key, value

    def topic(self) -> str:
        return self._t

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes:
        return self._v


@dataclass
class _InFlight:
    topic: str
    key: bytes | None
    value: bytes
    where: Provenance
    tracker: DeliveryTracker


class FakeSink:
    """Kafka as the at-least-once loop sees it. `poll` confirms a random share of the records in flight (in any
    order); `wait` confirms a page's. Values in `too_large` are refused for good (MSG_SIZE_TOO_LARGE), alone or
    with their batch; `fail_after` fails every delivery after that many confirmed (a retriable error)."""

    def __init__(self, seed: int = 0, too_large: Sequence[bytes] = (), fail_after: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.too_large = set(too_large)
        self.fail_after = fail_after
        self.in_flight: list[_InFlight] = []
        self.topics: dict[str, list[tuple[bytes | None, bytes]]] = {}
        self.abandoned = 0

    # ------------------------------------------------------------------------------------------ outcomes

    def values(self, topic: str) -> list[bytes]:
        return [v for _, v in self.topics.get(topic, [])]

    def confirmed(self) -> int:
        return sum(len(v) for v in self.topics.values())

    # ----------------------------------------------------------------------------------------- Sink

    def set_deadline(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def ensure_topics(self, topic: str, dlq_topic: str, deadline: Deadline) -> None:
        """Every topic exists in this Kafka."""

    def produce(self, topic: str, key: bytes | None, value: bytes, where: Provenance,
                tracker: DeliveryTracker) -> None:
        tracker.pending += 1
        self.in_flight.append(_InFlight(topic, key, value, where, tracker))

    def produce_all(self, topic: str, records: Sequence[tuple[bytes | None, bytes]], where: Provenance,
                    tracker: DeliveryTracker) -> int:
        for key, value in records:
            self.produce(topic, key, value, where, tracker)
        return sum(len(v) for _, v in records)

    def poll(self) -> None:
        self._confirm(lambda m: self.rng.random() < 0.5)

    def wait(self, tracker: DeliveryTracker, deadline: Deadline) -> None:
        self._confirm(lambda m: m.tracker is tracker)
        if tracker.error is not None:
            msg = f"delivery to {tracker.error_topic} failed: {tracker.error.str()}"
            raise SinkError(msg)

    def probe(self, refused: Sequence[Undeliverable], deadline: Deadline) -> list[Undeliverable]:
        """Send each record refused with its batch again alone: only the ones too large are refused again."""
        tracker = DeliveryTracker(alone=True)
        for item in refused:
            self.produce(item.topic, item.key, item.value, item.where, tracker)
        self.wait(tracker, deadline)
        return tracker.undeliverable

    def abandon(self) -> None:
        self.abandoned += len(self.in_flight)
        self.in_flight.clear()

    def _confirm(self, which: Callable[[_InFlight], bool]) -> None:
        messages = [m for m in self.in_flight if which(m)]
        chosen = {id(m) for m in messages}
        self.in_flight = [m for m in self.in_flight if id(m) not in chosen]
        for m in messages:
            err = None
            if m.value in self.too_large:
                err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large")
            elif self.fail_after is not None and self.confirmed() >= self.fail_after:
                err = KafkaError(KafkaError._MSG_TIMED_OUT, "Message timed out")
            if err is None:
                self._land(m.topic, m.key, m.value)
            m.tracker.report(m.where, err, _Message(m.topic, m.key, m.value))

    def _land(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.topics.setdefault(topic, []).append((key, value))


class FakeTransactionalSink(FakeSink):
    """Kafka transactions as `Transactional` sees them: confirmed records stay invisible (`topics` is what a
    read_committed consumer reads) until `commit`; `abort` drops them. `commit_failures` are raised by the next
    commits, one each (None: that commit succeeds; a `SinkError` is abortable, a `FatalSinkError` is not)."""

    def __init__(self, seed: int = 0, commit_failures: Sequence[BaseException | None] = ()) -> None:
        super().__init__(seed)
        self.commit_failures = list(commit_failures)
        self.committed: Checkpoint | None = None
        self.open: list[tuple[str, bytes | None, bytes]] | None = None
        self.inits = self.commits = self.aborts = 0

    def init(self, deadline: Deadline) -> None:
        self.inits += 1

    def begin(self) -> None:
        assert self.open is None, "a transaction is already open"
        self.open = []

    def produce_checkpoint(self, topic: str, key: bytes, value: bytes) -> None:
        assert self.open is not None, "a checkpoint record outside a transaction"
        self.open.append((topic, key, value))

    def commit(self, deadline: Deadline) -> None:
        self.commits += 1
        self._confirm(lambda m: True)
        failure = self.commit_failures.pop(0) if self.commit_failures else None
        if failure is not None:
            raise failure
        for topic, key, value in self.open or ():
            self.topics.setdefault(topic, []).append((key, value))
        self.open = None

    def abort(self, deadline: Deadline) -> None:
        self.aborts += 1
        self.in_flight.clear()
        self.open = None

    def refused_by_broker(self) -> list[Undeliverable]:
        return []

    def delivery_error(self) -> SinkError | None:
        return None

    def _land(self, topic: str, key: bytes | None, value: bytes) -> None:
        assert self.open is not None, f"a record for {topic} outside a transaction"
        self.open.append((topic, key, value))


class TopicCheckpoints(KafkaCheckpointStore):
    """The checkpoint topic's store over a fake sink's committed records (the backward scan is tested apart)."""

    def __init__(self, sink: FakeSink) -> None:
        super().__init__({}, CKPT_TOPIC)
        self.sink = sink

    def load(self, key: CheckpointKey, deadline: Deadline | None = None) -> Checkpoint | None:
        mine = [v for k, v in self.sink.topics.get(CKPT_TOPIC, []) if k == str(key).encode()]
        if not mine:
            return None
        doc = orjson.loads(mine[-1])
        return Checkpoint(doc["cursor"], doc["origin"])


@dataclass
class RecordingStore:
    """A `CheckpointStore` in memory that merges like the real ones and keeps each save, with what Kafka had
    confirmed at that moment (`on_save` takes that snapshot)."""

    on_save: Callable[[], Any] = lambda: None
    held: dict[CheckpointKey, Checkpoint] = field(default_factory=dict)
    saves: list[tuple[Checkpoint, Any]] = field(default_factory=list)

    def load(self, key: CheckpointKey) -> Checkpoint | None:
        return self.held.get(key)

    def save(self, key: CheckpointKey, checkpoint: Checkpoint) -> Checkpoint:
        self.held[key] = merge(self.held.get(key), checkpoint)
        self.saves.append((checkpoint, self.on_save()))
        return self.held[key]


def event(begin: int, end: int, shard: int = 0) -> TriggerEvent:
    return TriggerEvent("http://sls.test", "proj", "driving", shard, cursor_at(begin), cursor_at(end))


KEY = CheckpointKey("proj", "driving", 0, "")


def range_loop(shard: FakeShard, sink: Any, begin: int = 0, end: int | None = None, pull_count: int = 1000,
               timeout: float = 20.0, tolerance: str = "page", sleep: Callable[[float], None] = lambda s: None,
               policy: str = "begin") -> RangeLoop:
    """A real `RangeLoop` over the fakes, projecting `speed` and `carID` (key `carID`) from JSON `content`."""
    deadline = Deadline.after(timeout)
    stats = RetryStats()
    projector = Projector(ProjectionConfig(parse_fields("speed:number,carID:int"), dead_letter_tolerance=tolerance))
    end = len(shard.groups) if end is None else end
    run = RangeRun(event(begin, end), shard, projector, sink, KEY, TOPIC, DLQ,
                   SourceConfig(pull_count=pull_count, invalid_cursor_policy=policy),
                   sls_retrying(deadline, stats, sleep=sleep), stats, deadline)
    return RangeLoop(run)
