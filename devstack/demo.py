"""`sls-kafka demo`: the whole path on the local stack, checked end to end.

Brings up Kafka and the SLS emulator (`dev up`), creates a 4-shard logstore, writes the lesson's driving logs
plus generated vehicles and a few poison records over several intervals, runs the trigger runner once per
interval, then reads Kafka back and shows what arrived in the topic and the dead-letter topic. It exits 1 if
anything written is missing or duplicated.

Every run uses the same topic pair (`vehicles-demo` and its `.dlq`), created when missing: a run on a stack that
stays up leaves no new topics behind. Each run checks only what it added, read from the ends the topics had
before it started.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aliyun.log import LogClient
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from devstack import stack
from devstack.kafka import KafkaBrokerError, KafkaJarsError, create_topics
from devstack.sample_data import Written, ensure_logstore, write_driving_logs
from processor.commands.common import int_in_range
from processor.credentials import Credentials
from processor.runtime import Runtime
from processor.sls.shards import BEGIN
from processor.trigger_runner import TriggerConfig, TriggerRunner

ENDPOINT = "cn-hangzhou.log.emulator"
TOPIC, DLQ = "vehicles-demo", "vehicles-demo.dlq"
def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the whole path on the local stack (Kafka + SLS emulator) and check it",
                       description=__doc__)
    p.add_argument("--records", type=int_in_range(10, 10_000_000), default=4000,
                   help="generated vehicle records per interval (default 4000)")
    p.add_argument("--intervals", type=int_in_range(1, 100), default=3, help="trigger intervals to run (default 3)")
    p.add_argument("--interval", type=float, default=3.0, help="seconds between intervals (default 3)")
    p.add_argument("--kafka-port", type=int, default=9092, help="broker port if the stack is not up (default 9092)")
    p.add_argument("--sls-port", type=int, default=8090, help="emulator port if the stack is not up (default 8090)")
    p.add_argument("--state-dir", type=Path, default=None, help="dev stack state (default: as `dev up`)")
    p.add_argument("--keep-stack", action="store_true",
                   help="leave the stack running afterwards (by default the demo stops what it started)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or stack.default_state_dir()
    print("== local stack")
    try:
        results = stack.up(state_dir, args.kafka_port, args.sls_port)
    except (stack.StackError, KafkaBrokerError, KafkaJarsError) as exc:
        print(f"sls-kafka demo: error: the local stack did not start: {exc}", file=sys.stderr)
        return 1
    ports = {r.service.name: r.service.port for r in results}
    for r in results:
        print(f"   {r.service.name}: 127.0.0.1:{r.service.port} ({'started' if r.started else 'already running'})")
    try:
        return _demo(args, f"127.0.0.1:{ports[stack.KAFKA]}", ports[stack.SLS], state_dir)
    finally:
        if any(r.started for r in results) and not args.keep_stack:
            stack.down(state_dir)
            print("== stopped the local stack (use --keep-stack to keep it)")


def _demo(args: argparse.Namespace, bootstrap: str, sls_port: int, state_dir: Path) -> int:
    run_id = uuid.uuid4().hex[:8]
    project, logstore = f"demo-{run_id}", "driving"
    topic, dlq = TOPIC, DLQ
    os.environ.update({
        "HTTP_PROXY": f"http://127.0.0.1:{sls_port}", "http_proxy": f"http://127.0.0.1:{sls_port}",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": topic, "KAFKA_DLQ_TOPIC": dlq,
        "CHECKPOINT_DIR": str(state_dir / "demo-checkpoints"),
    })
    creds = Credentials("demo-key", "demo-secret")
    client = LogClient(ENDPOINT, creds.access_key_id, creds.access_key_secret)
    ensure_logstore(client, project, logstore, shards=4)
    create_topics(bootstrap, [topic], partitions=4)
    create_topics(bootstrap, [dlq], partitions=1)
    starts = {name: _ends(bootstrap, name) for name in (topic, dlq)}
    print(f"== SLS {ENDPOINT} project {project}, logstore {logstore} (4 shards) -> Kafka {bootstrap} topic {topic}")

    runtime = Runtime.from_env()
    written = Written()
    rng = random.Random(run_id)
    try:
        runner = TriggerRunner(runtime, TriggerConfig(ENDPOINT, project, logstore, interval=args.interval,
                                                      max_retry=3, start=BEGIN), creds)
        for i in range(args.intervals):
            now = write_driving_logs(client, project, logstore, args.records, rng, lesson=i == 0)
            written.add(now)
            stats = runner.run_round()
            print(f"   interval {i + 1}: wrote {now.logs} logs; {stats.invocations} invocation(s), "
                  f"{stats.records} read, {stats.produced} produced, {stats.dead_lettered} dead-lettered "
                  f"in {stats.seconds:.2f}s")
            if i + 1 < args.intervals:
                time.sleep(args.interval)
    finally:
        runtime.close()
    return _report(bootstrap, topic, dlq, starts, written)


def _report(bootstrap: str, topic: str, dlq: str, starts: dict[str, dict[int, int]], written: Written) -> int:
    expected, poison = written.expected, written.poison
    records = _read(bootstrap, topic, starts[topic])
    dead = _read(bootstrap, dlq, starts[dlq])
    got = Counter(value for _, value in records)
    print(f"== Kafka topic {topic}: {len(records)} records from this run (read_committed)")
    for key, value in records[:3]:
        print(f"   key={key.decode() if key else None} value={value.decode()}")
    lesson = [v.decode() for _, v in records if v in (b'{"speed":12,"carID":1234}', b'{"speed":24,"carID":3512}')]
    print(f"   the lesson's two lines arrived as: {sorted(set(lesson))}")
    print(f"== dead-letter topic {dlq}: {len(dead)} records from this run")
    for _, value in dead:
        doc = orjson.loads(value)
        print(f"   shard {doc['source']['shard']}: {doc['reason']}")
    missing, extra = expected - got, got - expected
    ok = not missing and not extra and len(dead) == poison
    print(f"== check: {sum(expected.values())} good records written, {len(records)} delivered, "
          f"{sum(missing.values())} missing, {sum(extra.values())} duplicated; {poison} poison written, "
          f"{len(dead)} dead-lettered: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


def _consumer(bootstrap: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-reader-{uuid.uuid4().hex}",
                     "enable.partition.eof": True, "isolation.level": "read_committed"})


def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end offset now: where this run's records will start."""
    consumer = _consumer(bootstrap)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def _read(bootstrap: str, topic: str, starts: dict[int, int], idle: float = 1.0) -> list[tuple[bytes | None, bytes]]:
    consumer = _consumer(bootstrap)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, starts.get(p, OFFSET_BEGINNING)) for p in partitions])
        out: list[tuple[bytes | None, bytes]] = []
        at_end: set[int] = set()
        last = time.monotonic()
        while at_end != set(partitions) or time.monotonic() - last < idle:
            for msg in consumer.consume(10_000, 0.2):
                err = msg.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                elif err is None:
                    at_end.discard(msg.partition())
                    last = time.monotonic()
                    out.append((msg.key(), msg.value()))
        return out
    finally:
        consumer.close()
