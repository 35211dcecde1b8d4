"""The log layouts SLS holds, at two widths: how each is written, projected, and read by a naive loop.

* `kv`: one content per field (Logtail's JSON and delimiter modes, the SDK's `put_logs`, Logstash/Fluentd).
* `json`: one `content` holding a JSON object (Logtail's simple mode).
* `raw`: one content per field written as a `LogGroupRaw` (bytes values) with `put_log_raw`, the city names in
  GBK as a legacy agent sends them: the SDK hands the values that are not UTF-8 over as bytes.
* `tags`: one content per field plus Logtail's group tags; the projection also keeps a tag.

Widths: the lesson's 7 driving-log fields (~125 bytes), and a 25-field ~600-byte vehicle telemetry log of
which the projection keeps 3.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aliyun.log.proto import LogGroup, LogGroupRaw

LAYOUTS = ("kv", "json", "raw", "tags")
WIDTHS = (7, 25)
MANUFACTURERS = ("BenZ", "BYD", "VW", "Toyota", "Tesla")
CITIES = ("Beijing", "Shanghai", "Hangzhou", "Shenzhen", "Chengdu", "Wuhan")
# What a GBK agent sends for the cities in the raw layout: not UTF-8, so upb gives them as bytes.
GBK_CITIES = {"Beijing": "北京", "Shanghai": "上海", "Hangzhou": "杭州", "Shenzhen": "深圳", "Chengdu": "成都",
              "Wuhan": "武汉"}
TAGS = (("__hostname__", "logtail-7f9c-2"), ("__path__", "/var/log/vehicle/telemetry.log"),
        ("__pack_id__", "6F3A1C2B9D4E5F60-1A"))
EVENTS = ("heartbeat", "trip_start", "trip_end", "harsh_brake", "overspeed", "geofence_exit")
WORDS = ("sensor", "reading", "nominal", "battery", "cell", "balance", "check", "passed", "gps", "fix", "acquired",
         "uplink", "retry", "cached", "segment", "flushed")


def driving(rng: random.Random, i: int) -> dict[str, Any]:
    """The lesson's seven fields."""
    return {"speed": rng.randint(0, 180), "carID": rng.randint(1000, 99_999), "manufacturer": rng.choice(MANUFACTURERS),
            "zone": "China", "distance": rng.randint(1, 1200), "endAt": rng.choice(CITIES),
            "startAt": rng.choice(CITIES)}


def telemetry(rng: random.Random, i: int) -> dict[str, Any]:
    """A 25-field vehicle telemetry log, about 600 bytes as JSON."""
    return {
        "ts": f"2024-05-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}.{i % 1000:03d}+08:00",
        "carID": rng.randint(1000, 99_999), "speed": rng.randint(0, 180), "driver": f"driver-{rng.randint(1, 5000)}",
        "trip_id": f"{rng.getrandbits(128):032x}", "vin": f"LSV{rng.getrandbits(56):014X}",
        "manufacturer": rng.choice(MANUFACTURERS), "model": f"M{rng.randint(1, 9)}", "zone": "China",
        "city": rng.choice(CITIES), "lat": round(rng.uniform(22, 40), 6), "lon": round(rng.uniform(104, 122), 6),
        "heading": rng.randint(0, 359), "altitude": rng.randint(-10, 3000), "odometer": rng.randint(0, 400_000),
        "fuel_level": round(rng.random(), 3), "battery_voltage": round(rng.uniform(11.5, 14.6), 2),
        "engine_temp": rng.randint(60, 110), "rpm": rng.randint(600, 6500), "gear": rng.choice("PRND"),
        "tire_pressure": f"{rng.uniform(2.1, 2.6):.2f}/{rng.uniform(2.1, 2.6):.2f}",
        "firmware": f"{rng.randint(1, 4)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
        "event": rng.choice(EVENTS), "request_id": f"{rng.getrandbits(64):016x}",
        "message": " ".join(rng.choice(WORDS) for _ in range(14)),
    }


@dataclass(frozen=True)
class Shape:
    """One layout at one width: the data set's logs, the projection's settings and the expected records."""

    layout: str
    width: int
    zone: bool = False  # the projection keeps `zone` too (the alert rules group by it)

    @property
    def name(self) -> str:
        return f"{self.layout}-{self.width}" + ("+zone" if self.zone else "")

    @property
    def record(self) -> Callable[[random.Random, int], dict[str, Any]]:
        return driving if self.width == 7 else telemetry

    @property
    def fields(self) -> tuple[tuple[str, str, Callable[[Any], Any]], ...]:
        """(source, output, cast of a text value): what the projection keeps, and how a naive loop types it."""
        kept: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (("speed", "speed", int), ("carID", "carID", int))
        if self.width == 25:
            kept += (("driver", "driver", str),)
        if self.layout == "tags":
            kept += (("__tag__:__hostname__", "host", str),)
        if self.zone:
            kept += (("zone", "zone", str),)
        return kept

    @property
    def projection_fields(self) -> str:
        """PROJECTION_FIELDS for the function."""
        types = {int: "int", str: "str"}
        parts = [f"{src}:{'number' if src == 'speed' else types[cast]}" + (f"={out}" if out != src else "")
                 for src, out, cast in self.fields]
        return ",".join(parts)

    def projected(self, rec: dict[str, Any]) -> bytes:
        """The compact JSON the function (and the naive loop) must write for `rec`."""
        full = {**rec, "__tag__:__hostname__": TAGS[0][1]}
        return orjson.dumps({out: full[src] for src, out, _ in self.fields})

    def logs(self, count: int, seed: int) -> Iterator[dict[str, Any]]:
        rng = random.Random(seed)
        return (self.record(rng, i) for i in range(count))

    def group(self, recs: list[dict[str, Any]], time: int) -> LogGroup | LogGroupRaw:
        """One log group of `recs` in this layout."""
        raw = self.layout == "raw"
        group = LogGroupRaw() if raw else LogGroup()
        group.Topic, group.Source = "vehicle", "10.0.0.7"
        if self.layout == "tags":
            for key, value in TAGS:
                tag = group.LogTags.add()
                tag.Key, tag.Value = key, value
        for rec in recs:
            log = group.Logs.add()
            log.Time = time
            if self.layout == "json":
                content = log.Contents.add()
                content.Key, content.Value = "content", orjson.dumps(rec).decode()
                continue
            for key, value in rec.items():
                content = log.Contents.add()
                if raw:
                    text = GBK_CITIES[value].encode("gbk") if value in GBK_CITIES else str(value).encode()
                    content.Key, content.Value = key, text
                else:
                    content.Key, content.Value = key, str(value)
        return group

    def naive_record(self, item: dict[str, Any]) -> dict[str, Any]:
        """What a careful naive loop makes of one of the SDK's flattened logs (`get_flatten_logs_json`)."""
        if self.layout == "json":
            doc = json.loads(item["content"])
            return {out: doc[src] for src, out, _ in self.fields}
        return {out: cast(item[src]) for src, out, cast in self.fields}


def shapes(layouts: tuple[str, ...] = LAYOUTS, widths: tuple[int, ...] = WIDTHS) -> list[Shape]:
    return [Shape(layout, width) for width in widths for layout in layouts]
