"""Orchestrate one benchmark run: services, data sets, each method in its own process, checks, results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import confluent_kafka
import google.protobuf
import orjson
from aliyun.log import LogClient

from bench import coldstart, report, services
from bench.dataset import fill, trigger_events
from bench.methods import Spec
from bench.verify import verify
from devstack.kafka import kafka_version

PROJECT = "bench"
RESULTS = services.REPO / "bench" / "results"
# (result name, worker method, data set, records keyed by carID)
RUNS = (
    ("at_least_once", "at_least_once", "main", True),
    ("exactly_once", "exactly_once", "main", True),
    ("naive", "naive", "main", True),
    ("lesson", "lesson", "lesson", False),
    ("stages", "stages", "main", True),
    ("range", "at_least_once", "range", True),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m bench", description="SLS → Kafka throughput: the lesson's method, "
                                "a careful naive loop and this project, on the same data, machine and broker.")
    p.add_argument("--records", type=int, default=1_000_000, help="records in the main data set (default 1000000)")
    p.add_argument("--shards", type=int, default=4, help="shards of the main data set (default 4)")
    p.add_argument("--lesson-records", type=int, default=20_000,
                   help="subset the lesson's method runs on; its rate is extrapolated (default 20000)")
    p.add_argument("--range-records", type=int, default=2_000_000,
                   help="records in the one-shard range whose peak RSS is measured; 0 skips it (default 2000000)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of each output topic (default 4)")
    p.add_argument("--cold-start-runs", type=int, default=7, help="fresh interpreters for the cold start (default 7)")
    p.add_argument("--bootstrap", help="use this Kafka broker instead of starting one for the run")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"directory for latest.json/.md (default {RESULTS})")
    return p.parse_args(argv)


def command_line(args: argparse.Namespace) -> str:
    parts = ["python3 -m bench", f"--records {args.records}", f"--shards {args.shards}"]
    if args.lesson_records != 20_000:
        parts.append(f"--lesson-records {args.lesson_records}")
    if args.range_records != 2_000_000:
        parts.append(f"--range-records {args.range_records}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with services.emulator() as sls, services.kafka(args.bootstrap) as kafka:
        doc = run(args, services.Services(kafka, sls))
    json_path, md_path = report.write(doc, args.out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    failed = [name for name, v in doc["verification"].items() if not v["ok"]]
    if failed:
        print(f"FAILED: output of {', '.join(failed)} does not match the data set", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace, svc: services.Services) -> dict[str, Any]:
    env = svc.child_env()
    os.environ.update({k: env[k] for k in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")})
    client = LogClient(services.SLS_ENDPOINT, services.ACCESS_KEY_ID, services.ACCESS_KEY_SECRET)
    client.create_project(PROJECT, "sls-kafka-processor benchmark")
    data = {"main": fill(client, PROJECT, "driving", args.shards, args.records),
            "lesson": fill(client, PROJECT, "lesson", 1, args.lesson_records)}
    if args.range_records:
        data["range"] = fill(client, PROJECT, "range", 1, args.range_records)
    print("== warming the broker up ...", file=sys.stderr, flush=True)
    services.warm_up(svc.bootstrap)
    doc: dict[str, Any] = {"command": command_line(args), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "machine": machine(), "setup": setup(args), "dataset": data["main"].as_dict(),
                           "verification": {}}
    for name, method, which, keyed in RUNS:
        if which not in data:
            continue
        dataset = data[which]
        topic = services.make_topic(svc.bootstrap, f"bench-{name}-{uuid.uuid4().hex[:8]}", args.partitions)
        events = [e.decode() for e in trigger_events(client, services.SLS_ENDPOINT, dataset)]
        spec = Spec(method, svc.bootstrap, topic, events, checkpoint_dir=str(Path(env.get("TMPDIR", "/tmp"))
                                                                              / f"bench-checkpoints-{topic}"))
        print(f"== {name}: {dataset.records:,} records from {dataset.logstore} ...", file=sys.stderr, flush=True)
        load = [round(v, 2) for v in os.getloadavg()]
        before = svc.cpu_seconds()
        result = {"load_average": load, **_worker(spec, env)}
        after = svc.cpu_seconds()
        result["service_cpu_seconds"] = _spent(before, after)
        verdict = verify(svc.bootstrap, topic, dataset.expected, keyed)
        doc["verification"][name] = verdict.as_dict()
        doc[name] = result
        print(f"   {result['records_per_second']:,.0f} records/s, verified: {verdict.ok}", file=sys.stderr)
    doc["lesson"]["extrapolated_seconds_for_dataset"] = round(args.records / doc["lesson"]["records_per_second"], 1)
    doc["ratios"] = report.ratios(doc)
    function_env = {**env, "KAFKA_BOOTSTRAP_SERVERS": svc.bootstrap, "KAFKA_TOPIC": "bench-cold-start"}
    doc["cold_start"] = coldstart.measure(function_env, args.cold_start_runs)
    doc["targets"] = report.targets(doc)
    doc["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return doc


def _spent(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float | None]:
    spent: dict[str, float | None] = {}
    for name, start in before.items():
        end = after[name]
        spent[name] = None if start is None or end is None else round(end - start, 2)
    return spent


def _worker(spec: Spec, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.worker"], input=json.dumps(asdict(spec)), env=env,
                          cwd=services.REPO, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        msg = f"{spec.method} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        raise RuntimeError(msg)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "confluent_kafka": confluent_kafka.__version__, "librdkafka": confluent_kafka.libversion()[0],
            "protobuf": google.protobuf.__version__, "orjson": orjson.__version__, "kafka": kafka_version()}


def setup(args: argparse.Namespace) -> dict[str, Any]:
    return {"sls": "devstack SLS emulator in its own process (its CPU is not counted in the method's), reached "
                   "through the SDK over HTTP with lz4",
            "warm_up": f"{services.WARM_UP_RECORDS:,} records and one transaction through the broker before "
                       "the first method",
            "kafka": "one local broker (KRaft, same machine); every producer acks=all",
            "output_partitions": args.partitions,
            "lesson": f"run on a {args.lesson_records:,}-record subset, rate extrapolated to the data set",
            "invocations": "this project: FC handler, one invocation per shard, one after another, one process"}
