"""`sls-kafka demo`: the whole cloud path on the local stack, checked end to end.

Brings up Kafka, the SLS emulator and the SMTP server (`dev up`), creates a 4-shard logstore, builds the FC
package from this checkout and deploys s.demo.yaml (the repository's s.yaml with a 3 s trigger interval and the
demo's alert rules) to the local cloud (`dev deploy`): the processor behind its SLS trigger, the alert evaluator
behind its timer. It then writes the lesson's driving logs plus generated vehicles (some over 120 km/h) and a few
poison records over several trigger intervals, waits until the trigger's log shows every shard delivered, reads
Kafka back and checks the exact multiset, and shows the alert email the speeding cars caused. It exits 1 if
anything written is missing or duplicated, or if no alert mail arrived in time.

Every run uses the same topics (`vehicles-demo`, its `.dlq`, s.yaml's alert topics), created when missing: a run
on a stack that stays up leaves no new topics behind. Each run checks only what it added, read from the ends the
topics had before it started.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aliyun.log import LogClient

from common.errors import ProcessorError
from devstack import demo_cloud, stack
from devstack.cli import print_mail
from devstack.demo_kafka import ends, report
from devstack.fc import cli as fc_cli
from devstack.fc.spec import FunctionSpec
from devstack.kafka import KafkaBrokerError, KafkaJarsError, create_topics
from devstack.sample_data import Written, ensure_logstore, write_driving_logs
from processor.commands.common import int_in_range

ENDPOINT = "cn-hangzhou.log.emulator"
TOPIC, DLQ = "vehicles-demo", "vehicles-demo.dlq"
MAIL_LINES = 24  # of the mail's text part; a digest of a hundred cars is `sls-kafka dev mail N`'s to show


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="deploy s.yaml to the local cloud (Kafka, SLS emulator, SMTP) and check it",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int_in_range(10, 10_000_000), default=4000,
                   help="generated vehicle records per interval (default 4000)")
    p.add_argument("--intervals", type=int_in_range(1, 100), default=3,
                   help="trigger intervals to write in (default 3)")
    p.add_argument("--kafka-port", type=int, default=9092, help="broker port if the stack is not up (default 9092)")
    p.add_argument("--sls-port", type=int, default=8090, help="emulator port if the stack is not up (default 8090)")
    p.add_argument("--smtp-port", type=int, default=2525, help="SMTP port if the stack is not up (default 2525)")
    p.add_argument("--smtp-tls-port", type=int, default=2465,
                   help="SMTP implicit-TLS port if the stack is not up (default 2465)")
    p.add_argument("--fc-port", type=int, default=9000, help="the local cloud's InvokeFunction port (default 9000)")
    p.add_argument("--wait", type=float, default=60.0,
                   help="seconds to wait for the trigger to deliver, and again for the alert mail (default 60)")
    p.add_argument("--state-dir", type=Path, default=None, help="dev stack state (default: as `dev up`)")
    p.add_argument("--keep-stack", action="store_true",
                   help="leave the stack and the deployment running afterwards (by default the demo stops what it "
                        "started and its deployment)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or stack.default_state_dir()
    started = time.monotonic()
    print("== local stack")
    try:
        results = stack.up(state_dir, args.kafka_port, args.sls_port, args.smtp_port, args.smtp_tls_port)
    except (stack.StackError, KafkaBrokerError, KafkaJarsError) as exc:
        print(f"sls-kafka demo: error: the local stack did not start: {exc}", file=sys.stderr)
        return 1
    ports = {r.service.name: r.service.port for r in results}
    for r in results:
        print(f"   {r.service.name}: 127.0.0.1:{r.service.port} ({'started' if r.started else 'already running'})")
    try:
        return _demo(args, f"127.0.0.1:{ports[stack.KAFKA]}", ports[stack.SLS], state_dir)
    except (RuntimeError, ProcessorError) as exc:  # a package that did not build, a deploy that was refused
        print(f"sls-kafka demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep_stack:
            if fc_cli.stop(state_dir):
                print("== stopped the local cloud's deployment")
            if any(r.started for r in results):
                stack.down(state_dir)
                print("== stopped the local stack (use --keep-stack to keep it)")
        print(f"== the demo took {time.monotonic() - started:.0f}s")


def _demo(args: argparse.Namespace, bootstrap: str, sls_port: int, state_dir: Path) -> int:
    run_id = uuid.uuid4().hex[:8]
    project, logstore = f"demo-{run_id}", "driving"
    os.environ.update({"HTTP_PROXY": f"http://127.0.0.1:{sls_port}", "http_proxy": f"http://127.0.0.1:{sls_port}"})
    client = LogClient(ENDPOINT, "demo-key", "demo-secret")
    ensure_logstore(client, project, logstore, shards=4)
    ensure_logstore(client, project, demo_cloud.TRIGGER_LOGSTORE, shards=1)
    print("== FC package of this checkout (python3.10)")
    code = demo_cloud.package(state_dir)
    env = demo_cloud.deploy_env(bootstrap, sls_port, state_dir, project, logstore, TOPIC, code)
    functions = demo_cloud.functions(env)
    _create_topics(bootstrap, functions)
    starts = {name: ends(bootstrap, name) for name in (TOPIC, DLQ)}
    mails_before = demo_cloud.mail_count(state_dir)
    print(f"== deploy {demo_cloud.S_DEMO.name} (extends s.yaml) to the local cloud: SLS {project}/{logstore} "
          f"(4 shards) -> Kafka {bootstrap} topic {TOPIC}")
    demo_cloud.deploy(env, state_dir, args.fc_port)
    interval = next(t.interval for f in functions for t in f.triggers)
    cursors = demo_cloud.end_cursors(client, project, logstore)
    written = Written()
    rng = random.Random(run_id)
    for i in range(args.intervals):
        now = write_driving_logs(client, project, logstore, args.records, rng, lesson=i == 0)
        written.add(now)
        print(f"   interval {i + 1}: wrote {now.logs} logs", flush=True)
        if i + 1 < args.intervals:
            time.sleep(interval)
    log = demo_cloud.wait_delivered(client, project, logstore, cursors, args.wait)
    failed = [r for r in log if r["status"] != "success"]
    print(f"== trigger log {project}/{demo_cloud.TRIGGER_LOGSTORE}: {len(log)} invocation(s) over "
          f"{len({r['shardId'] for r in log})} shard(s), {len(failed)} failed (`sls-kafka dev logs` shows them)")
    for r in log[:3]:
        print(f"   shard {r['shardId']} attempt {r['attempt']}: {r['status']} in {r['latencyMs']} ms "
              f"(request {r['requestId']})")
    delivered_ok = report(bootstrap, TOPIC, DLQ, starts, written)
    return 0 if _show_alert_mail(state_dir, mails_before, written, args.wait) and delivered_ok else 1


def _create_topics(bootstrap: str, functions: list[FunctionSpec]) -> None:
    create_topics(bootstrap, [TOPIC], partitions=4)
    create_topics(bootstrap, [DLQ], partitions=1)
    env = {k: v for f in functions for k, v in f.env.items()}
    create_topics(bootstrap, [env["ALERT_PARTIALS_TOPIC"]], partitions=4)
    create_topics(bootstrap, [env["ALERT_HISTORY_TOPIC"]], partitions=1)
    create_topics(bootstrap, [env["ALERT_STATE_TOPIC"]], partitions=1, config={"cleanup.policy": "compact"})


def _show_alert_mail(state_dir: Path, seen: int, written: Written, wait: float) -> bool:
    records = [orjson.loads(value) for value in written.expected]
    speeding = {str(doc["carID"]) for doc in records if doc["speed"] > 120}
    print(f"== alert mail: {len(speeding)} car(s) drove over 120 km/h; waiting for the evaluator's email")
    mails = demo_cloud.wait_for_alerts(state_dir, seen, "speeding", speeding, wait)
    if mails:
        print_mail(mails[0], max_lines=MAIL_LINES)
    missing = speeding - demo_cloud.alerted_keys(mails)
    ok = bool(mails) and not missing
    print(f"== alert check: {len(mails)} speeding mail(s) from this run list {len(speeding) - len(missing)} of the "
          f"{len(speeding)} speeding cars within {wait:g}s: {'OK' if ok else 'FAILED'}")
    return ok
