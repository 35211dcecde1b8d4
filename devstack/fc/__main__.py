"""The local cloud as a process: `python -m devstack.fc --state-dir DIR --port PORT S_YAML` (what `dev deploy` runs).

It deploys S_YAML (variables from its own environment), serves InvokeFunction on 127.0.0.1:PORT, runs the
triggers, and writes `host.json` (pid, port, s.yaml) once it serves. SIGTERM stops it and its instances.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from common.errors import ConfigError
from devstack.fc.api import FcApiServer
from devstack.fc.cloud import CloudConfig, LocalCloud

HOST_FILE = "host.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.fc", description=__doc__)
    parser.add_argument("s_yaml", type=Path)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--max-instances", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cloud = LocalCloud(CloudConfig.from_env(args.state_dir, os.environ, max_instances=args.max_instances))
    try:
        cloud.deploy(args.s_yaml)
        api = FcApiServer(cloud.host, cloud.secrets, args.port)
    except (ConfigError, OSError) as exc:
        print(f"local FC: error: {exc}", file=sys.stderr)
        cloud.close()
        return 2
    # SIGTERM ends serve_forever from a thread, so the cleanup below runs.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=api.server.shutdown, daemon=True).start())
    info = {"pid": os.getpid(), "port": api.port, "s_yaml": str(args.s_yaml.resolve()),
            "functions": {name: [t.spec.interval for t in triggers] for name, triggers in cloud.triggers.items()}}
    tmp = args.state_dir / (HOST_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(args.state_dir / HOST_FILE)
    try:
        api.serve_forever()
    finally:
        cloud.close()
        api.server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
