"""Sample driving logs for the local stack: the lesson's two lines, generated vehicles, a few poison records.

Written through the real SDK, as a vehicle fleet's Logtail would: JSON lines in a `content` field (Logtail's
simple mode) and, for half the vehicles, one SLS content per field.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
from aliyun.log import LogClient, LogException, LogItem, PutLogsRequest

LESSON_LINES = (
    '{"speed":12,"carID":1234,"manufacturer":"BenZ","zone":"China","distance":102,"endAt":"Beijing",'
    '"startAt":"Shanghai"}',
    '{"speed":24,"carID":3512,"manufacturer":"BenZ","zone":"China","distance":102,"endAt":"Beijing",'
    '"startAt":"Shanghai"}',
)
POISON = (
    {"content": '{"speed": 40, "carID": '},
    {"content": '{"speed": 40}'},
    {"content": '{"speed": "fast", "carID": 77}'},
    {"content": ""},
)
GROUP_SIZE = 200


@dataclass
class Written:
    """What a write produced: the projected records (speed, carID) it should yield, and the poison count."""

    expected: Counter[bytes] = field(default_factory=Counter)
    poison: int = 0

    @property
    def logs(self) -> int:
        return sum(self.expected.values()) + self.poison

    def add(self, other: Written) -> None:
        self.expected.update(other.expected)
        self.poison += other.poison


def ensure_logstore(client: LogClient, project: str, logstore: str, shards: int) -> None:
    """Create the project and the logstore unless they exist."""
    for create, args, exists in ((client.create_project, (project, "sls-kafka sample data"), "ProjectAlreadyExist"),
                                 (client.create_logstore, (project, logstore, 1, shards), "LogStoreAlreadyExist")):
        try:
            create(*args)
        except LogException as exc:
            if exc.get_error_code() != exists:
                raise


def write_driving_logs(client: LogClient, project: str, logstore: str, n: int, rng: random.Random,
                       lesson: bool = True, poison: bool = True) -> Written:
    lines = list(LESSON_LINES) if lesson else []
    # The first vehicle is always over 120 km/h: every batch has a car the alert rules' speeding rule reports.
    vehicles = [{"speed": rng.randint(121, 160) if i == 0 else rng.randint(0, 160), "carID": rng.randint(1000, 1099),
                 "manufacturer": "BenZ", "zone": "China", "distance": rng.randint(1, 500), "endAt": "Beijing",
                 "startAt": "Shanghai"} for i in range(n)]
    lines += [orjson.dumps(v).decode() for v in vehicles[: n // 2]]
    key_values = vehicles[n // 2:]
    groups = [[{"content": line} for line in lines[k:k + GROUP_SIZE]] for k in range(0, len(lines), GROUP_SIZE)]
    groups += [[{k: str(v) for k, v in vehicle.items()} for vehicle in key_values[k:k + GROUP_SIZE]]
               for k in range(0, len(key_values), GROUP_SIZE)]
    if poison:
        groups[0] = groups[0] + list(POISON)
    for contents in groups:
        items = []
        for c in contents:
            item = LogItem(timestamp=int(time.time()))
            item.set_contents(list(c.items()))
            items.append(item)
        client.put_logs(PutLogsRequest(project, logstore, "driving", "10.0.0.8", items))
    written = Written(poison=len(POISON) if poison else 0)
    for line in lines:
        doc = orjson.loads(line)
        written.expected[orjson.dumps({"speed": doc["speed"], "carID": doc["carID"]})] += 1
    written.expected.update(orjson.dumps({"speed": v["speed"], "carID": v["carID"]}) for v in key_values)
    return written
