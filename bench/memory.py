"""Peak RSS of the function over one long range per log layout: the memory goal (at most 150 MB for a
2,000,000-record range on every layout).

`python3 -m bench.memory --records 2000000`: per layout and width, one shard filled with `--records` records,
delivered by the function (at-least-once, one invocation, its own process) and verified record for record. The
main bench measures the same on one layout (`--range-records`); this runs every layout, without the naive loops,
whose memory is not the question.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from aliyun.log import LogClient

from bench import services
from bench.dataset import fill_layout
from bench.layouts import LAYOUTS, WIDTHS, shapes
from bench.methods import Spec
from bench.run import PROJECT, RESULTS, measure

LIMIT_MB = 150


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=2_000_000, help="records per layout's range (default 2000000)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of each output topic (default 4)")
    p.add_argument("--bootstrap", help="use this Kafka broker instead of starting one for the run")
    p.add_argument("--out", type=Path, default=RESULTS / "memory.md", help="the table (default %(default)s)")
    args = p.parse_args(argv)
    with services.emulator() as sls, services.kafka(args.bootstrap) as kafka:
        rows, doc = _run(args, services.Services(kafka, sls))
    table = _table(args, rows)
    args.out.write_text(table)
    print(table)
    failed = [name for name, v in doc["verification"].items() if not v["ok"]]
    over = [row["name"] for row in rows if row["peak_rss_mb"] > LIMIT_MB]
    if failed:
        print(f"FAILED: output of {', '.join(failed)} does not match the data set", file=sys.stderr)
    return 1 if failed or over else 0


def _run(args: argparse.Namespace, svc: services.Services) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    env = svc.child_env()
    os.environ.update({k: env[k] for k in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")})
    client = LogClient(services.SLS_ENDPOINT, services.ACCESS_KEY_ID, services.ACCESS_KEY_SECRET)
    client.create_project(PROJECT, "sls-kafka-processor memory benchmark")
    doc: dict[str, Any] = {"verification": {}}
    rows = []
    for shape in shapes(LAYOUTS, WIDTHS):
        dataset = fill_layout(client, PROJECT, shape, args.records)
        options = {"layout": shape.layout, "width": shape.width, "env": {"PROJECTION_FIELDS": shape.projection_fields}}
        spec = Spec("at_least_once", svc.bootstrap, "", [], options=options)
        result = measure(doc, svc, client, env, args, f"memory/{shape.name}", spec, dataset, True)
        rows.append({"name": shape.name, "layout": shape.layout, "width": shape.width, **result,
                     "verified": doc["verification"][f"memory/{shape.name}"]["ok"]})
        # The emulator holds every logstore in memory: drop each layout's data once it has been measured.
        client.delete_logstore(PROJECT, dataset.logstore)
    return rows, doc


def _table(args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    lines = [f"`python3 -m bench.memory --records {args.records}` ({time.strftime('%Y-%m-%d')}): the function "
             f"(at-least-once, one invocation in its own process) over a one-shard range of {args.records:,} "
             f"records per layout; peak RSS is the process's VmHWM. Goal: at most {LIMIT_MB} MB.", "",
             "| Layout | Width | Records | Records/s | Peak RSS MB | Verified | Load (1 min) |",
             "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['layout']} | {r['width']} fields | {r['records']:,} | {r['records_per_second']:,.0f} | "
                     f"{r['peak_rss_mb']:.0f} | {'yes' if r['verified'] else 'NO'} | {r['load_average'][0]} |")
    worst = max(rows, key=lambda r: r["peak_rss_mb"])
    verdict = "met" if worst["peak_rss_mb"] <= LIMIT_MB else "not met"
    lines += ["", f"Worst: {worst['name']} at {worst['peak_rss_mb']:.0f} MB ({verdict})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
