"""`sls-kafka dev deploy [s.yaml]` and `sls-kafka dev logs`: the local cloud beside the dev stack.

`deploy` checks s.yaml and its code in the foreground (a bad file is refused here, exit 2, naming the
problem), then replaces the running local cloud (a process of its own under `<state dir>/fc`) with one running
this s.yaml. The SLS emulator of `dev up` is used as the network's proxy unless HTTP_PROXY says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aliyun.log import LogClient

from common.errors import ConfigError
from devstack import stack
from devstack.fc.__main__ import HOST_FILE
from devstack.fc.cloud import CloudConfig
from devstack.fc.code import prepare
from devstack.fc.spec import load
from devstack.fc.trigger import check_source
from devstack.processes import ProcessRef

START_TIMEOUT_S = 60.0
_MODULE = "devstack.fc"


def register(sub: argparse._SubParsersAction[Any], state: argparse.ArgumentParser) -> None:
    deploy = sub.add_parser("deploy", parents=[state], help="deploy s.yaml to the local cloud (FC host + triggers)")
    deploy.add_argument("s_yaml", nargs="?", type=Path, default=Path("s.yaml"), help="default: %(default)s")
    deploy.add_argument("--fc-port", type=int, default=9000, help="InvokeFunction port (default: %(default)s)")
    deploy.add_argument("--max-instances", type=int, default=4,
                        help="instances per function at most (default: %(default)s)")
    deploy.set_defaults(func=_deploy)
    logs = sub.add_parser("logs", parents=[state], help="show the local cloud's function and trigger logs")
    logs.add_argument("function", nargs="?", help="one function (default: all)")
    logs.add_argument("--request-id", help="only this invocation's lines")
    logs.add_argument("--tail", type=int, default=100, help="last N lines (0: all; default: %(default)s)")
    logs.set_defaults(func=_logs)


def fc_dir(state_dir: Path) -> Path:
    return state_dir / "fc"


def stop(state_dir: Path) -> bool:
    """Stop the local cloud, if one runs; returns whether one did."""
    info = _host(state_dir)
    if info is None:
        return False
    ProcessRef(info["pid"], info["start_ticks"]).stop(grace=15.0)
    (fc_dir(state_dir) / HOST_FILE).unlink(missing_ok=True)
    return True


def _deploy(args: argparse.Namespace) -> int:
    if "HTTP_PROXY" not in os.environ and (sls := stack.status(args.state_dir)[stack.SLS]) is not None:
        # Here too: the triggers' logstores are checked from this process.
        os.environ["HTTP_PROXY"] = os.environ["http_proxy"] = f"http://127.0.0.1:{sls.port}"
        os.environ.setdefault("NO_PROXY", "localhost,127.0.0.1")
    env = dict(os.environ)
    config = CloudConfig.from_env(fc_dir(args.state_dir), env)
    try:
        specs = load(args.s_yaml, env, config.account_id)
        sls = LogClient(config.sls_endpoint, config.access_key_id, config.access_key_secret)
        for spec in specs:
            prepare(spec, config.state_dir / "functions" / spec.name, args.s_yaml.resolve().parent,
                    config.credentials, config.network_env)
            for trigger in spec.triggers:
                check_source(sls, trigger)
    except ConfigError as exc:
        print(f"sls-kafka dev deploy: error: {exc}", file=sys.stderr)
        return 2
    if stop(args.state_dir):
        print("stopped the previous deployment")
    try:
        info = _start(args, env)
    except RuntimeError as exc:
        print(f"sls-kafka dev deploy: error: {exc}", file=sys.stderr)
        return 1
    for spec in specs:
        triggers = [f"{t.name} every {t.interval:g}s on {t.project}/{t.logstore}" + ("" if t.enabled else " (disabled)")
                    for t in spec.triggers]
        triggers += [f"{t.name} every {t.every:g}s" + ("" if t.enabled else " (disabled)") for t in spec.timers]
        print(f"{spec.name}: {spec.runtime} {spec.handler}, timeout {spec.timeout:g}s; "
              f"{', '.join(triggers) or 'no trigger'}")
    print(f"InvokeFunction on 127.0.0.1:{info['port']} (pid {info['pid']}); logs: sls-kafka dev logs")
    return 0


def _start(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    directory = fc_dir(args.state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "host.log"
    command = [sys.executable, "-m", _MODULE, str(args.s_yaml.resolve()), "--state-dir", str(directory),
               "--port", str(args.fc_port), "--max-instances", str(args.max_instances)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while (info := _host(args.state_dir)) is None or info["pid"] != proc.pid:
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            msg = f"the local cloud did not start (see {log_path}):\n{tail}"
            raise RuntimeError(msg)
        time.sleep(0.2)
    return info


def _host(state_dir: Path) -> dict[str, Any] | None:
    """The running local cloud's host.json, with the process' identity; None when none runs."""
    try:
        info = json.loads((fc_dir(state_dir) / HOST_FILE).read_text())
        ref = ProcessRef.of(info["pid"])
    except (OSError, ValueError, KeyError, ProcessLookupError):
        return None
    if not ref.is_running(_MODULE):
        return None
    return {**info, "start_ticks": ref.start_ticks}


def _logs(args: argparse.Namespace) -> int:
    log_dir = fc_dir(args.state_dir) / "logs"
    files = sorted(log_dir.glob(f"{args.function or '*'}.log"))
    if not files:
        print(f"no logs in {log_dir}" + (f" for function {args.function}" if args.function else ""),
              file=sys.stderr)
        return 1
    for path in files:
        lines = path.read_text(errors="replace").splitlines()
        if args.request_id:
            lines = [line for line in lines if line.split(" ", 2)[1:2] == [args.request_id]]
        if args.tail:
            lines = lines[-args.tail:]
        print(f"== {path.stem}")
        print("\n".join(lines))
    return 0
