"""Projection alone, in this process: `Projector.project_group` on every layout and width, no I/O.

    python3 -m bench.projection [--records 200000] [--profile]

Groups are built as the function receives them (serialized, then parsed by upb as the SDK does: `LogGroup`, with
bytes for values that are not UTF-8); the raw layout is also run as the `LogGroupRaw` object itself (every value
bytes). Prints records per CPU second (this process's, so other load on the machine matters less) per layout
and width, the best of three passes. `--profile` runs each under cProfile and prints the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

from aliyun.log.proto import LogGroup, LogGroupRaw

from bench.dataset import group_sizes
from bench.layouts import Shape, shapes
from processor.config import ProjectionConfig, parse_fields
from processor.projection import Projector


def groups(shape: Shape, records: int, as_raw: bool) -> list[Any]:
    import random

    logs = shape.logs(records, seed=7)
    out = []
    for size in group_sizes(records, random.Random(8)):
        data = shape.group([next(logs) for _ in range(size)], 1_700_000_000).SerializeToString()
        parsed = LogGroupRaw() if as_raw else LogGroup()
        parsed.ParseFromString(data)
        out.append(parsed)
    return out


def rate(projector: Projector, page: list[Any], records: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for group in page:
            _, bad = projector.project_group(group)
            if bad:
                msg = f"rejected: {bad[0].reason}"
                raise RuntimeError(msg)
        best = min(best, time.process_time() - started)
    return records / best


def main() -> None:
    parser = argparse.ArgumentParser(prog="python3 -m bench.projection", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    runs = [(shape, False) for shape in shapes()] + [(s, True) for s in shapes(("raw",))]
    for shape, as_raw in runs:
        projector = Projector(ProjectionConfig(parse_fields(shape.projection_fields), "auto", "content", "carID"))
        page = groups(shape, args.records, as_raw)
        label = shape.name + (" (LogGroupRaw)" if as_raw else "")
        print(f"{label:24s} {rate(projector, page, args.records):>12,.0f} records/s")
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(rate, projector, page, args.records)
            pstats.Stats(profile).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
