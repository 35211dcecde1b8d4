"""Pull throughput of ONE SDK client against the SLS emulator (run in its own process, as in `dev up`).

    python bench/emulator_pull.py [--mb 100] [--count 100] [--parse]

Writes ~``--mb`` MB of uncompressed, realistic-looking logs into one shard, then drains it with
``pull_logs(count, end_cursor)`` once per compression (lz4, zstd, none) and prints MB/s of uncompressed
LogGroupList bytes (x-log-bodyrawsize). ``--parse`` also makes the SDK decode every response into
protobuf objects, which is what a real consumer pays on top.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from aliyun.log import LogClient
from aliyun.log.proto import LogGroupRaw

REPO = Path(__file__).resolve().parents[1]
PROJECT, LOGSTORE = "bench", "pull"
LOGS_PER_GROUP = 64
WORDS = ("alpha", "beta", "gamma", "delta", "order", "payment", "user", "cart", "checkout", "cache", "miss", "retry")


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    """Run the emulator in a child process on a free port; return it and its proxy URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.sls_emulator", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "SLS emulator listening on http://127.0.0.1:<port>"
    return proc, first.rsplit(" ", 1)[-1].strip()


def make_group(rng: random.Random) -> LogGroupRaw:
    """One group of access-log-like records, ~500 bytes each, not trivially compressible."""
    group = LogGroupRaw()
    group.Topic, group.Source = "nginx", "10.1.2.3"
    tag = group.LogTags.add()
    tag.Key, tag.Value = "hostname", "web-7"
    now = int(time.time())
    for _ in range(LOGS_PER_GROUP):
        log = group.Logs.add()
        log.Time = now
        fields = {
            "remote_addr": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
            "request": f"GET /api/v1/items/{rng.randrange(10**9)}?session={rng.getrandbits(64):016x} HTTP/1.1",
            "status": rng.choice(["200", "200", "200", "404", "500"]),
            "body_bytes_sent": str(rng.randrange(10**6)),
            "request_time": f"{rng.random():.3f}",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
            "trace_id": f"{rng.getrandbits(128):032x}",
            "message": " ".join(rng.choice(WORDS) for _ in range(20)),
        }
        for key, value in fields.items():
            content = log.Contents.add()
            content.Key, content.Value = key, value.encode()
    return group


def fill(client: LogClient, megabytes: int) -> int:
    """Write distinct groups until ``megabytes`` of serialized data are stored; return the group count."""
    rng = random.Random(42)
    written = groups = 0
    while written < megabytes * 1_000_000:
        group = make_group(rng)
        client.put_log_raw(PROJECT, LOGSTORE, group)
        written += group.ByteSize()
        groups += 1
    return groups


def drain(client: LogClient, count: int, parse: bool, **kwargs: object) -> tuple[int, float]:
    """Pull the whole shard; return (uncompressed bytes, seconds)."""
    cursor = client.get_begin_cursor(PROJECT, LOGSTORE, 0).get_cursor()
    end = client.get_end_cursor(PROJECT, LOGSTORE, 0).get_cursor()
    total = 0
    started = time.perf_counter()
    while cursor != end:
        response = client.pull_logs(PROJECT, LOGSTORE, 0, cursor, count=count, end_cursor=end, **kwargs)
        total += response.get_raw_size()
        if parse:
            response.get_loggroup_list()
        cursor = response.get_next_cursor()
    return total, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100, help="uncompressed MB to write (default 100)")
    parser.add_argument("--count", type=int, default=100, help="log groups per pull_logs call (default 100)")
    parser.add_argument("--parse", action="store_true", help="also decode responses into protobuf objects")
    args = parser.parse_args()
    proc, proxy = start_emulator()
    try:
        os.environ["HTTP_PROXY"] = os.environ["http_proxy"] = proxy
        client = LogClient("cn-hangzhou.log.emulator", "bench", "bench")
        client.create_project(PROJECT, "pull benchmark")
        client.create_logstore(PROJECT, LOGSTORE, shard_count=1)
        started = time.perf_counter()
        groups = fill(client, args.mb)
        print(f"wrote {groups} groups x {LOGS_PER_GROUP} logs in {time.perf_counter() - started:.1f}s")
        for name, kwargs in (("lz4", {}), ("zstd", {"accept_compress_type": "zstd"}), ("none", {"compress": False})):
            raw, seconds = drain(client, args.count, args.parse, **kwargs)
            rate = raw / 1e6 / seconds
            print(f"{name:5s} count={args.count}: {raw / 1e6:.0f} MB in {seconds:.2f}s = {rate:.0f} MB/s")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
