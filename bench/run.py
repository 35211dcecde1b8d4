"""Orchestrate one benchmark run: services, data sets, each method in its own process, checks, results."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
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
from bench.dataset import Dataset, fill, fill_layout, fill_small_ranges, trigger_events
from bench.layouts import LAYOUTS, WIDTHS, Shape, shapes
from bench.methods import Spec
from bench.verify import count, verify
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
# Records per warm invocation in the small-range table: at 1,000 records/s a 3 s trigger interval carries 3,000.
SMALL_SIZES = (300, 3_000, 30_000)
# Issue 11's cost of alerting: the function with these rules against the function without, runs alternating.
ALERT_RULES = services.REPO / "bench" / "alert_rules.yaml"
ALERT_REPS = 7  # the two differ by a few percent, single runs by more: medians of several
# The range a fresh instance's first invocation delivers in the cold-start step.
COLD_START_RANGE_RECORDS = 300


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m bench", description="SLS → Kafka throughput: the lesson's method, "
                                "a careful naive loop and this project, on the same data, machine and broker.")
    p.add_argument("--records", type=int, default=1_000_000, help="records in the main data set (default 1000000)")
    p.add_argument("--shards", type=int, default=4, help="shards of the main data set (default 4)")
    p.add_argument("--lesson-records", type=int, default=20_000,
                   help="subset the lesson's method runs on; its rate is extrapolated (default 20000)")
    p.add_argument("--range-records", type=int, default=2_000_000,
                   help="records in the one-shard range whose peak RSS is measured; 0 skips it (default 2000000)")
    p.add_argument("--layout-records", type=int, default=200_000,
                   help="records in each layout's one-shard range (layouts x widths); 0 skips them (default 200000)")
    p.add_argument("--layouts", type=_names, default=LAYOUTS,
                   help=f"comma-separated layouts to compare with the naive loop (default {','.join(LAYOUTS)})")
    p.add_argument("--widths", type=_widths, default=WIDTHS,
                   help="comma-separated log widths: 7 (the lesson's fields) and/or 25 (a 600-byte log; default 7,25)")
    p.add_argument("--small-reps", type=int, default=15,
                   help="warm invocations of each small range size (300, 3000, 30000 records) per delivery mode; "
                   "0 skips them (default 15)")
    p.add_argument("--alert-records", type=int, default=200_000,
                   help="records of the one-shard range run with and without the three alert rules of "
                   f"{ALERT_RULES.name}, {ALERT_REPS} times each, alternating; 0 skips it (default 200000)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of each output topic (default 4)")
    p.add_argument("--cold-start-runs", type=int, default=7, help="fresh interpreters for the cold start (default 7)")
    p.add_argument("--bootstrap", help="use this Kafka broker instead of starting one for the run")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"directory for latest.json/.md (default {RESULTS})")
    return p.parse_args(argv)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(set(names) - set(LAYOUTS))
    if unknown:
        msg = f"unknown layout(s) {', '.join(unknown)}; choose from {', '.join(LAYOUTS)}"
        raise argparse.ArgumentTypeError(msg)
    return names


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if not widths or set(widths) - set(WIDTHS):
        msg = f"widths are a comma-separated choice of {', '.join(map(str, WIDTHS))}, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return widths


def command_line(args: argparse.Namespace) -> str:
    parts = ["python3 -m bench", f"--records {args.records}", f"--shards {args.shards}"]
    if args.lesson_records != 20_000:
        parts.append(f"--lesson-records {args.lesson_records}")
    if args.range_records != 2_000_000:
        parts.append(f"--range-records {args.range_records}")
    if args.layout_records != 200_000:
        parts.append(f"--layout-records {args.layout_records}")
    if args.layouts != LAYOUTS:
        parts.append(f"--layouts {','.join(args.layouts)}")
    if args.small_reps != 15:
        parts.append(f"--small-reps {args.small_reps}")
    if args.alert_records != 200_000:
        parts.append(f"--alert-records {args.alert_records}")
    if args.widths != WIDTHS:
        parts.append(f"--widths {','.join(map(str, args.widths))}")
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
        if which in data:
            spec = Spec(method, svc.bootstrap, "", [])
            doc[name] = measure(doc, svc, client, env, args, name, spec, data[which], keyed)
    doc["layouts"] = {shape.name: _layout(doc, svc, client, env, args, shape)
                      for shape in shapes(args.layouts, args.widths) if args.layout_records}
    if args.small_reps:
        doc["small_ranges"] = _small_ranges(doc, svc, client, env, args)
    if args.alert_records:
        doc["alerts"] = _alerts(doc, svc, client, env, args)
    doc["lesson"]["extrapolated_seconds_for_dataset"] = round(args.records / doc["lesson"]["records_per_second"], 1)
    doc["ratios"] = report.ratios(doc)
    doc["layout_ratios"] = report.layout_ratios(doc)
    cold_topic = services.make_topic(svc.bootstrap, f"bench-cold-start-{uuid.uuid4().hex[:8]}", 1)
    services.make_topic(svc.bootstrap, f"{cold_topic}.dlq", 1)
    function_env = {**env, "KAFKA_BOOTSTRAP_SERVERS": svc.bootstrap, "KAFKA_TOPIC": cold_topic,
                    "KAFKA_DLQ_TOPIC": f"{cold_topic}.dlq", "ALIBABA_CLOUD_ACCESS_KEY_ID": services.ACCESS_KEY_ID,
                    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": services.ACCESS_KEY_SECRET, "LOG_LEVEL": "WARNING"}
    first_range = fill(client, PROJECT, "cold-start", 1, COLD_START_RANGE_RECORDS)
    first_event = trigger_events(client, services.SLS_ENDPOINT, first_range)[0].decode()
    doc["cold_start"] = {**coldstart.measure(function_env, args.cold_start_runs, first_event),
                         "first_invocation_records": COLD_START_RANGE_RECORDS}
    doc["targets"] = report.targets(doc)
    doc["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return doc


def measure(doc: dict[str, Any], svc: services.Services, client: LogClient, env: dict[str, str],
             args: argparse.Namespace, name: str, spec: Spec, dataset: Dataset, keyed: bool) -> dict[str, Any]:
    """Run `spec.method` over `dataset` in a worker process into a new topic, read it back, record the verdict.

    The method gets one event per shard of `dataset`, unless `spec.events` already names its ranges.
    """
    topic = services.make_topic(svc.bootstrap, f"bench-{name.replace('/', '-')}-{uuid.uuid4().hex[:8]}",
                                args.partitions)
    services.make_topic(svc.bootstrap, f"{topic}.dlq", 1)  # the function checks it exists at `initialize`
    spec.topic = topic
    spec.events = spec.events or [e.decode() for e in trigger_events(client, services.SLS_ENDPOINT, dataset)]
    spec.checkpoint_dir = str(Path(env.get("TMPDIR", "/tmp")) / f"bench-checkpoints-{topic}")
    print(f"== {name}: {dataset.records:,} records from {dataset.logstore} ...", file=sys.stderr, flush=True)
    load = [round(v, 2) for v in os.getloadavg()]
    before = svc.cpu_seconds()
    result = {"load_average": load, **_worker(spec, env)}
    after = svc.cpu_seconds()
    result["service_cpu_seconds"] = _spent(before, after)
    verdict = verify(svc.bootstrap, topic, dataset.expected, keyed)
    doc["verification"][name] = verdict.as_dict()
    print(f"   {result['records_per_second']:,.0f} records/s, verified: {verdict.ok}", file=sys.stderr)
    return result


def _layout(doc: dict[str, Any], svc: services.Services, client: LogClient, env: dict[str, str],
            args: argparse.Namespace, shape: Shape) -> dict[str, Any]:
    """The function (at-least-once) and the naive loop adapted to `shape`, on the same one-shard range."""
    dataset = fill_layout(client, PROJECT, shape, args.layout_records)
    options = {"layout": shape.layout, "width": shape.width, "env": {"PROJECTION_FIELDS": shape.projection_fields}}
    out = {"layout": shape.layout, "width": shape.width, "projection_fields": shape.projection_fields,
           "raw_bytes_per_record": round(dataset.raw_bytes / dataset.records)}
    for method, label in (("at_least_once", "function"), ("naive_layout", "naive")):
        spec = Spec(method, svc.bootstrap, "", [], options=options)
        out[label] = measure(doc, svc, client, env, args, f"{shape.name}/{label}", spec, dataset, True)
    # The emulator holds every logstore in memory: drop each layout's data once it has been measured.
    client.delete_logstore(PROJECT, dataset.logstore)
    return out


def _alerts(doc: dict[str, Any], svc: services.Services, client: LogClient, env: dict[str, str],
            args: argparse.Namespace) -> dict[str, Any]:
    """The function on one key/value range (zone projected) without and with the alert rules, alternating."""
    shape = Shape("kv", 7, zone=True)
    dataset = fill_layout(client, PROJECT, shape, args.alert_records)
    partials = services.make_topic(svc.bootstrap, f"bench-alert-partials-{uuid.uuid4().hex[:8]}", 1)
    variants = {"without": {"PROJECTION_FIELDS": shape.projection_fields},
                "with": {"PROJECTION_FIELDS": shape.projection_fields, "ALERT_RULES": str(ALERT_RULES),
                         "ALERT_PARTIALS_TOPIC": partials}}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for rep in range(ALERT_REPS):
        for name, variant in variants.items():
            options = {"layout": shape.layout, "width": shape.width, "env": variant}
            spec = Spec("at_least_once", svc.bootstrap, "", [], options=options)
            runs[name].append(measure(doc, svc, client, env, args, f"alerts/{name}/{rep}", spec, dataset, True))
    client.delete_logstore(PROJECT, dataset.logstore)
    out: dict[str, Any] = {"records": dataset.records, "reps": ALERT_REPS, "rules": ALERT_RULES.name}
    for name, results in runs.items():
        out[name] = {key: statistics.median(r[key] for r in results)
                     for key in ("records_per_second", "cpu_seconds_per_million")}
        out[name]["load_average"] = [r["load_average"][0] for r in results]
    # Runs of one variant differ by more than the variants do (the machine's other load): each run with the rules
    # is compared with the run without them just before it, and the median of those ratios is the figure.
    pairs = list(zip(runs["without"], runs["with"], strict=True))
    out["throughput_drop"] = round(1 - statistics.median(w["records_per_second"] / wo["records_per_second"]
                                                         for wo, w in pairs), 3)
    out["cpu_increase"] = round(statistics.median(w["cpu_seconds_per_million"] / wo["cpu_seconds_per_million"]
                                                  for wo, w in pairs) - 1, 3)
    # Inside the runs with the rules, unaffected by that spread: the observer's CPU against the function's.
    out["observer_cpu_share"] = round(statistics.median(r["observer_cpu_seconds"] / r["cpu_seconds"]
                                                        for r in runs["with"]), 3)
    # Proof the rules were at work: the runs with them produced partial aggregates, those without none.
    out["partial_records"] = count(svc.bootstrap, partials)
    return out


def _small_ranges(doc: dict[str, Any], svc: services.Services, client: LogClient, env: dict[str, str],
                  args: argparse.Namespace) -> dict[str, Any]:
    """Warm invocations of SMALL_SIZES records, `args.small_reps` each, per delivery mode: p50 and p95 latency."""
    ranges = fill_small_ranges(client, PROJECT, services.SLS_ENDPOINT, SMALL_SIZES, args.small_reps)
    out: dict[str, Any] = {"reps": args.small_reps}
    for mode in ("at_least_once", "exactly_once"):
        spec = Spec(f"small_{mode}", svc.bootstrap, "", list(ranges.events), options={"sizes": ranges.sizes})
        result = measure(doc, svc, client, env, args, f"small/{mode}", spec, ranges.dataset, True)
        result["latency_ms"] = {size: _percentiles(values) for size, values in result.pop("latencies_ms").items()}
        out[mode] = result
    return out


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    # Nearest rank: with 15 invocations p95 is the slowest of them, with 20 the slowest but one.
    return {"p50": ordered[math.ceil(0.50 * len(ordered)) - 1], "p95": ordered[math.ceil(0.95 * len(ordered)) - 1],
            "max": ordered[-1]}


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
