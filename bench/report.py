"""The result file (`latest.json`, machine-readable) and the short Markdown table the README includes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TARGETS = {
    "at_least_once_records_per_second": (150_000, ">="),
    "kv_7_records_per_second": (150_000, ">="),
    "worst_layout_vs_naive": (3, ">="),
    "worst_layout_cpu_vs_naive": (1 / 3, "<="),
    "worst_kv_vs_json": (0.85, ">="),
    "exactly_once_records_per_second": (100_000, ">="),
    "at_least_once_vs_lesson": (50, ">="),
    "at_least_once_vs_naive": (3, ">="),
    "range_peak_rss_mb": (150, "<="),
    "cold_start_ms": (250, "<="),
    "small_3000_at_least_once_p50_ms": (25, "<="),
    "small_3000_exactly_once_vs_at_least_once_p50": (2, "<="),
    "alerts_throughput_drop": (0.10, "<="),
}

_ROWS = (
    ("lesson", "(a) lesson: produce + flush per message"),
    ("naive", "(b) careful naive loop"),
    ("at_least_once", "(c) this project, at-least-once"),
    ("exactly_once", "(d) this project, exactly-once"),
)


def ratios(doc: dict[str, Any]) -> dict[str, float]:
    rate = {name: doc[name]["records_per_second"] for name, _ in _ROWS}
    return {
        "at_least_once_vs_lesson": round(rate["at_least_once"] / rate["lesson"], 1),
        "at_least_once_vs_naive": round(rate["at_least_once"] / rate["naive"], 2),
        "exactly_once_vs_at_least_once": round(rate["exactly_once"] / rate["at_least_once"], 2),
    }


def _small_targets(small: dict[str, Any] | None) -> dict[str, float | None]:
    alo = small["at_least_once"]["latency_ms"].get("3000") if small else None
    eo = small["exactly_once"]["latency_ms"].get("3000") if small else None
    return {"small_3000_at_least_once_p50_ms": alo["p50"] if alo else None,
            "small_3000_exactly_once_vs_at_least_once_p50": round(eo["p50"] / alo["p50"], 2) if alo and eo else None}


def layout_ratios(doc: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per layout: the function over the naive loop (records/s) and CPU per record (function / naive); per width:
    key/value over JSON-in-content (records/s)."""
    out: dict[str, dict[str, float]] = {}
    layouts = doc.get("layouts", {})
    for name, r in layouts.items():
        f, n = r["function"], r["naive"]
        out[name] = {"vs_naive": round(f["records_per_second"] / n["records_per_second"], 2),
                     "cpu_vs_naive": round(f["cpu_seconds_per_million"] / n["cpu_seconds_per_million"], 3)}
        json_run = layouts.get(f"json-{r['width']}")
        if r["layout"] != "json" and json_run:
            out[name]["vs_json"] = round(f["records_per_second"] / json_run["function"]["records_per_second"], 2)
    return out


def targets(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    lr = doc.get("layout_ratios", {})
    kv_vs_json = [r["vs_json"] for name, r in lr.items() if name.startswith("kv-") and "vs_json" in r]
    kv7 = doc.get("layouts", {}).get("kv-7")
    values = {
        "kv_7_records_per_second": kv7["function"]["records_per_second"] if kv7 else None,
        "worst_layout_vs_naive": min((r["vs_naive"] for r in lr.values()), default=None),
        "worst_layout_cpu_vs_naive": max((r["cpu_vs_naive"] for r in lr.values()), default=None),
        "worst_kv_vs_json": min(kv_vs_json, default=None),
        "at_least_once_records_per_second": doc["at_least_once"]["records_per_second"],
        "exactly_once_records_per_second": doc["exactly_once"]["records_per_second"],
        **{k: v for k, v in doc["ratios"].items() if k in TARGETS},
        "range_peak_rss_mb": doc["range"]["peak_rss_mb"] if doc.get("range") else None,
        "cold_start_ms": doc["cold_start"]["warm_bytecode"]["total_ms"],
        **_small_targets(doc.get("small_ranges")),
        "alerts_throughput_drop": doc["alerts"]["throughput_drop"] if doc.get("alerts") else None,
    }
    out = {}
    for name, (bound, op) in TARGETS.items():
        value = values[name]
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        out[name] = {"target": f"{op} {bound:,.3g}", "value": value, "met": met}
    return out


def write(doc: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "latest.json", out_dir / "latest.md"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    md_path.write_text(markdown(doc))
    return json_path, md_path


def markdown(doc: dict[str, Any]) -> str:
    data, machine = doc["dataset"], doc["machine"]
    lines = [
        f"`{doc['command']}`: {data['records']:,} driving-log records ({data['raw_bytes'] / 1e6:.0f} MB of "
        f"uncompressed LogGroups, {data['groups']:,} groups of 16-4,096 logs) over {data['shards']} shards, "
        f"lz4 on the wire; Kafka {machine['kafka']} (acks=all) and the SLS emulator (own process) on the same "
        f"{machine['nproc']}-core machine; load average {_load(doc)}.",
        "",
        "| Method | Records | Records/s | MB/s | CPU s | CPU s per million | Peak RSS MB | vs (a) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lesson_rate = doc["lesson"]["records_per_second"]
    for name, label in _ROWS:
        r = doc[name]
        shown = label
        if name == "lesson":
            shown += f" (measured on a {r['records']:,}-record subset, extrapolated)"
        lines.append(f"| {shown} | {r['records']:,} | {r['records_per_second']:,.0f} | {r['mb_per_second']:.1f} | "
                     f"{r['cpu_seconds']:.1f} | {r['cpu_seconds_per_million']:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['records_per_second'] / lesson_rate:,.1f}x |")
    q = doc["ratios"]
    lines += ["", f"Ratios: (c)/(a) = {q['at_least_once_vs_lesson']:,.1f}x, "
              f"(c)/(b) = {q['at_least_once_vs_naive']:.2f}x, (d)/(c) = {q['exactly_once_vs_at_least_once']:.2f}. "
              "Every method's output was read back and matched the data set record for record (count and "
              "fingerprint)."]
    services = doc["at_least_once"].get("service_cpu_seconds", {})
    if services.get("kafka") is not None:
        lines += ["", f"During (c) the broker used {services['kafka']:.1f} CPU s and the SLS emulator "
                  f"{services['sls_emulator']:.1f} CPU s, besides the method's own "
                  f"{doc['at_least_once']['cpu_seconds']:.1f}."]
    lines += _layout_table(doc)
    lines += _small_table(doc)
    lines += _alerts_table(doc)
    stages, wall = doc["stages"]["stage_seconds"], doc["stages"]["wall_seconds"]
    lines += ["", f"Where (c)'s time goes: (c) run again with a clock around each part of its loop, busy seconds "
              f"per stage over a run of {wall:.2f} s wall. Pull, decompress and decode run in the prefetch thread "
              "while the main thread projects, produces and serves acks, so stages overlap (percentages are of "
              "the wall time).", "", "| " + " | ".join(stages) + " |", "|" + "---:|" * len(stages),
              "| " + " | ".join(f"{s:.2f} s ({100 * s / wall:.0f}%)" for s in stages.values()) + " |"]
    if doc.get("range"):
        r = doc["range"]
        quarters = ", ".join(f"{v:.0f}" for v in r["rss_quarters_mb"])
        lines += ["", f"Memory: one {r['records']:,}-record shard range, at-least-once, peaks at "
                  f"{r['peak_rss_mb']:.0f} MB RSS (peak per quarter of the run: {quarters} MB)."]
    c = doc["cold_start"]
    w = c["warm_bytecode"]
    lines += ["", f"Cold start (import `processor.handler` + `initialize`, fresh interpreter, median of {c['runs']}): "
              f"{w['total_ms']:.0f} ms with .pyc files (import {w['import_ms']:.0f} ms, initialize "
              f"{w['initialize_ms']:.0f} ms), {c['no_bytecode_cache']['total_ms']:.0f} ms without."]
    if "first_invocation_ms" in w:
        lines[-1] += (f" The instance's first invocation ({c['first_invocation_records']:,} records) then takes "
                      f"{w['first_invocation_ms']:.0f} ms, the imports `initialize` leaves to it included (the SLS "
                      "SDK, the delivery loop).")
    if c.get("import_ms_by_package"):
        top = list(c["import_ms_by_package"].items())[:8]
        lines += ["", "Import by package (`-X importtime`, own time of each module, one run): "
                  + ", ".join(f"{name} {ms:.0f} ms" for name, ms in top) + "."]
    lines += ["", "Targets: " + "; ".join(f"{name.replace('_', ' ')} {t['value']} ({t['target']}: "
                                        f"{'met' if t['met'] else 'not met' if t['met'] is False else 'not measured'})"
                                        for name, t in doc["targets"].items()) + "."]
    return "\n".join(lines) + "\n"


def _layout_table(doc: dict[str, Any]) -> list[str]:
    layouts = doc.get("layouts")
    if not layouts:
        return []
    first = next(iter(layouts.values()))
    lines = ["", f"Layouts: each a one-shard range of {first['function']['records']:,} records in groups of 16-4,096 "
             "logs, this function (at-least-once, one invocation) and the careful naive loop adapted to the layout "
             "(`get_flatten_logs_json`, `json.dumps`, `produce` per record, one flush), one after the other. CPU s "
             "per million records is the process's CPU time (librdkafka's threads included): what FC bills.", "",
             "| Layout | Width (bytes) | Kept | Function records/s | Naive records/s | Ratio | Function CPU s/M | "
             "Naive CPU s/M | CPU ratio | vs JSON | Load (1 min) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    ratios = doc.get("layout_ratios", {})
    for name, r in layouts.items():
        f, n, q = r["function"], r["naive"], ratios.get(name, {})
        vs_json = f"{q['vs_json']:.2f}" if "vs_json" in q else "-"
        lines.append(f"| {r['layout']} | {r['width']} fields ({r['raw_bytes_per_record']}) | "
                     f"{len(r['projection_fields'].split(','))} | {f['records_per_second']:,.0f} | "
                     f"{n['records_per_second']:,.0f} | {q.get('vs_naive', 0):.2f}x | "
                     f"{f['cpu_seconds_per_million']:.1f} | {n['cpu_seconds_per_million']:.1f} | "
                     f"{q.get('cpu_vs_naive', 0):.2f} | {vs_json} | {f['load_average'][0]:.2f}, "
                     f"{n['load_average'][0]:.2f} |")
    return lines


def _alerts_table(doc: dict[str, Any]) -> list[str]:
    a = doc.get("alerts")
    if not a:
        return []
    rows = [f"| {name} | {a[name]['records_per_second']:,.0f} | {a[name]['cpu_seconds_per_million']:.1f} | "
            f"{', '.join(f'{v:.2f}' for v in a[name]['load_average'])} |" for name in ("without", "with")]
    return ["", f"Alerting's cost: the function (at-least-once) on one {a['records']:,}-record key/value range with "
            f"`zone` projected, without and with the three rules of `bench/{a['rules']}` (one per-record, one windowed "
            f"count, one p95 by zone), {a['reps']} runs each, alternating; medians of each.", "",
            "| Alert rules | Records/s | CPU s/M | Load (1 min) per run |", "|---|---:|---:|---|", *rows, "",
            f"With the rules, each run against the run without them just before it (median of the {a['reps']} "
            f"pairs): throughput drop {a['throughput_drop']:.1%}, CPU per record {a['cpu_increase']:+.1%}. Inside "
            f"the runs with the rules, the alert observer took {a['observer_cpu_share']:.1%} of the function's CPU "
            "(its thread's CPU time in `RangeLoop._observe`)."]


def _small_table(doc: dict[str, Any]) -> list[str]:
    small = doc.get("small_ranges")
    if not small:
        return []
    alo, eo = small["at_least_once"]["latency_ms"], small["exactly_once"]["latency_ms"]
    lines = ["", f"Small ranges: warm invocations of one instance (after one untimed), {small['reps']} per size and "
             "delivery mode, one shard, groups of up to 1,000 logs; latency of the whole invocation.", "",
             "| Records per invocation | At-least-once p50 ms | p95 ms | Exactly-once p50 ms | p95 ms |",
             "|---:|---:|---:|---:|---:|"]
    for size in alo:
        lines.append(f"| {int(size):,} | {alo[size]['p50']:.0f} | {alo[size]['p95']:.0f} | {eo[size]['p50']:.0f} | "
                     f"{eo[size]['p95']:.0f} |")
    return lines


def _load(doc: dict[str, Any]) -> str:
    loads = [doc[name]["load_average"][0] for name, _ in _ROWS]
    return f"{min(loads):.2f}-{max(loads):.2f} (1 min, at the start of each method)"
