"""Test support for end-to-end runs: write driving logs through the real SDK, build trigger-shaped events."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from types import SimpleNamespace
from typing import Any

import orjson
from aliyun.log import LogClient, LogItem, PutLogsRequest

from processor.event import TriggerEvent

LESSON_LINES = [
    '{"speed":12,"carID":1234,"manufacturer":"BenZ","zone":"China","distance":102,"endAt":"Beijing",'
    '"startAt":"Shanghai"}',
    '{"speed":24,"carID":3512,"manufacturer":"BenZ","zone":"China","distance":102,"endAt":"Beijing",'
    '"startAt":"Shanghai"}',
]


def driving_record(i: int, rng: random.Random) -> dict[str, Any]:
    return {"speed": rng.randint(0, 180), "carID": 10_000 + i % 997, "manufacturer": rng.choice(["BenZ", "BYD", "VW"]),
            "zone": "China", "distance": rng.randint(1, 900), "endAt": "Beijing", "startAt": "Shanghai", "seq": i}


def put_groups(client: LogClient, project: str, logstore: str, groups: Iterable[list[dict[str, str]]],
               shard_hash: str | None = None, topic: str = "driving", source: str = "10.0.0.7") -> int:
    """Write each list of content dicts as one log group; returns the number of logs written."""
    n = 0
    for contents in groups:
        items = []
        for c in contents:
            item = LogItem(timestamp=1_700_000_000 + n)
            item.set_contents(list(c.items()))
            items.append(item)
            n += 1
        req = PutLogsRequest(project, logstore, topic, source, items, hashKey=shard_hash)
        client.put_logs(req)
    return n


def json_contents(records: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [{"content": orjson.dumps(r).decode()} for r in records]


def kv_contents(records: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [{k: str(v) for k, v in r.items()} for r in records]


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def shard_events(client: LogClient, endpoint: str, project: str, logstore: str,
                 parameter: dict[str, Any] | None = None) -> list[bytes]:
    """One trigger event per shard for [begin, end), as the SLS trigger would send after the writes."""
    events = []
    for shard in client.list_shards(project, logstore).get_shards_info():
        sid = int(shard["shardID"])
        begin = client.get_begin_cursor(project, logstore, sid).get_cursor()
        end = client.get_end_cursor(project, logstore, sid).get_cursor()
        ev = TriggerEvent(endpoint, project, logstore, sid, begin, end, parameter or {}, "job-test", f"task-{sid}",
                          1_700_000_000)
        events.append(orjson.dumps(ev.to_dict()))
    return events


def fc310_context(key_id: str, secret: str, token: str | None = None, timeout: float = 120) -> SimpleNamespace:
    """A python3.10-style FC context: credentials object and function metadata."""
    creds = SimpleNamespace(access_key_id=key_id, access_key_secret=secret, security_token=token)
    return SimpleNamespace(credentials=creds, request_id="req-1",
                           function=SimpleNamespace(name="sls-to-kafka", handler="index.handler", memory=1024,
                                                    timeout=timeout))


def fc312_context(timeout: float = 120) -> SimpleNamespace:
    """A python3.12-style FC context: no credentials attribute (they come from ALIBABA_CLOUD_* variables)."""
    return SimpleNamespace(request_id="req-2", function=SimpleNamespace(name="sls-to-kafka", timeout=timeout))
