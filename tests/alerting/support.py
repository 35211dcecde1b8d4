"""End-to-end support for the alert tests: a logstore whose records carry chosen event times, the FC function
with a rules file, invocations over what was written since the last one, and an evaluator on a test clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aliyun.log import LogClient, LogItem, PutLogsRequest

from alerting.channel_config import FileChannel, evaluator_channels
from alerting.evaluator import Evaluator, EvaluatorConfig
from alerting.rules import parse_rules
from processor import handler as fc
from processor.event import TriggerEvent
from tests.pipeline_support import fc312_context
from tests.sls_fixtures import SLS_ACCESS_KEY_ID, SLS_ACCESS_KEY_SECRET

FIELDS = "speed:number,carID:int,zone:str?"


def window_start(size: int = 300, ago: int = 3600) -> int:
    """An event time an hour back, on a window boundary: the partials' Kafka timestamps (now) are in look-back."""
    now = int(time.time()) - ago
    return now - now % size


@dataclass
class Logstore:
    client: LogClient
    endpoint: str
    project: str
    name: str
    hash_keys: dict[int, str]
    cursors: dict[int, str] = field(default_factory=dict)

    def put(self, shard: int, records: list[tuple[dict[str, Any], int]]) -> None:
        """One log group on `shard`: each record as JSON in `content`, with its event time."""
        items = []
        for record, t in records:
            item = LogItem(timestamp=t)
            item.set_contents([("content", orjson.dumps(record).decode())])
            items.append(item)
        self.client.put_logs(PutLogsRequest(self.project, self.name, "driving", "10.0.0.7", items,
                                            hashKey=self.hash_keys[shard]))

    def new_events(self) -> list[bytes]:
        """Trigger events for what each shard received since the last call; an idle shard gets none."""
        events = []
        for shard in sorted(self.hash_keys):
            end = self.client.get_end_cursor(self.project, self.name, shard).get_cursor()
            begin = self.cursors.get(shard) or self.client.get_begin_cursor(self.project, self.name, shard).get_cursor()
            if begin != end:
                ev = TriggerEvent(self.endpoint, self.project, self.name, shard, begin, end, {}, "job", f"t{shard}",
                                  int(time.time()))
                events.append(orjson.dumps(ev.to_dict()))
            self.cursors[shard] = end
        return events

    def deliver(self) -> list[dict[str, Any]]:
        return [fc.handler(ev, fc312_context()) for ev in self.new_events()]


def make_logstore(client: LogClient, endpoint: str, project: str, shards: int = 4) -> Logstore:
    client.create_logstore(project, "driving", ttl=1, shard_count=shards)
    infos = client.list_shards(project, "driving").get_shards_info()
    return Logstore(client, endpoint, project, "driving", {int(s["shardID"]): s["inclusiveBeginKey"] for s in infos})


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class AlertStack:
    """The function configured with a rules file, and evaluators over its partials sending into a file."""

    bootstrap: str
    rules_path: Path
    partials: str
    state: str
    history: str
    sent_path: Path
    clock: Clock

    def evaluator(self, lease: float = 120.0) -> Evaluator:
        """Sending into `sent_path`, or through the rules file's channels when it declares some."""
        rules = parse_rules(self.rules_path.read_text(), str(self.rules_path))
        config = EvaluatorConfig({"bootstrap.servers": self.bootstrap}, self.partials, self.state, self.history,
                                 lease)
        channels = evaluator_channels(rules, None) if rules.channels else {"file": FileChannel(self.sent_path)}
        return Evaluator(rules, config, channels, self.clock)

    def sent(self) -> list[dict[str, Any]]:
        if not self.sent_path.exists():
            return []
        return [orjson.loads(line) for line in self.sent_path.read_bytes().splitlines()]


def alert_stack(rules: str, kafka: Any, topic_factory: Any, tmp_path: Path, function_env: Any,
                extra_env: dict[str, str] | None = None) -> AlertStack:
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(rules)
    topic, dlq, partials = topic_factory(partitions=2), topic_factory(), topic_factory(partitions=2)
    state = topic_factory(config={"cleanup.policy": "compact"})
    history = topic_factory()
    function_env.set({"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "KAFKA_TOPIC": topic, "KAFKA_DLQ_TOPIC": dlq,
                      "CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "ALIBABA_CLOUD_ACCESS_KEY_ID": SLS_ACCESS_KEY_ID,
                      "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SLS_ACCESS_KEY_SECRET, "INVOCATION_TIMEOUT_SECONDS": "60",
                      "TIME_BUDGET_MARGIN_SECONDS": "2", "PROJECTION_FIELDS": FIELDS, "ALERT_RULES": str(rules_path),
                      "ALERT_PARTIALS_TOPIC": partials, **(extra_env or {})})
    return AlertStack(kafka.bootstrap, rules_path, partials, state, history, tmp_path / "sent.jsonl", Clock(0))
