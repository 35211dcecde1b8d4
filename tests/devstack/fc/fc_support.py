"""Helpers of the local cloud's tests: s.yaml files, small functions, the variables a user exports, waiting."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import yaml

from tests.sls_fixtures import pull_range


def write_s_yaml(path: Path, functions: dict[str, dict[str, Any]], variables: dict[str, Any] | None = None) -> Path:
    """A minimal fc3 s.yaml with one resource per function (props as given)."""
    doc = {"edition": "3.0.0", "name": "t", "vars": variables or {},
           "resources": {name: {"component": "fc3", "props": props} for name, props in functions.items()}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def small_function(code: Path, source: str, **props: Any) -> dict[str, Any]:
    """Props of a python3.10 function whose index.py is `source` (a handler `index.handler`)."""
    code.mkdir(parents=True, exist_ok=True)
    (code / "index.py").write_text(source)
    return {"region": "cn-hangzhou", "functionName": code.name, "runtime": "python3.10", "code": str(code),
            "handler": "index.handler", "timeout": 5, **props}


def repo_env(bootstrap: str, topic: str, project: str, logstore: str, trigger_logstore: str) -> dict[str, str]:
    """What a user exports before deploying the repository's s.yaml (PLAINTEXT Kafka, no VPC locally)."""
    return {"SLS_REGION": "cn-hangzhou", "SLS_PROJECT": project, "SLS_LOGSTORE": logstore,
            "SLS_TRIGGER_LOGSTORE": trigger_logstore, "FUNCTION_ROLE_NAME": "sls-kafka-processor",
            "VPC_ID": "", "VSWITCH_ID": "", "SECURITY_GROUP_ID": "", "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_TOPIC": topic, "KAFKA_SECURITY_PROTOCOL": "", "KAFKA_SASL_MECHANISM": "",
            "KAFKA_SASL_USERNAME": "", "KAFKA_SASL_PASSWORD": "",
            # The alert evaluator's mail settings (its function is the other resource of s.yaml).
            "SMTP_HOST": "", "SMTP_USERNAME": "", "SMTP_PASSWORD": "", "ALERT_MAIL_FROM": "", "ALERT_MAIL_TO": ""}


def trigger_log(client, project, logstore):
    """The trigger's execution records, oldest first, as dicts."""
    records = []
    for shard in client.list_shards(project, logstore).get_shards_info():
        sid = shard["shardID"]
        begin = client.get_begin_cursor(project, logstore, sid).get_cursor()
        end = client.get_end_cursor(project, logstore, sid).get_cursor()
        for response in pull_range(client, project, logstore, sid, begin, end):
            records += [{k: v for k, v in log.items() if not k.startswith("__")}
                        for log in response.get_flatten_logs_json()]
    return records


def process_alive(pid: int | str) -> bool:
    """Whether the process runs (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def first_call_differs(code_zip: Path, tmp_path: Path, module: str, first_call: str,
                       marker_text: str) -> tuple[Path, Path]:
    """The packaged code unpacked, plus `module.handler`: its first call writes `marker_text` (a Python expression)
    to the returned marker file and runs `first_call` (one Python statement); every later call is the packaged
    handler's."""
    code, marker = tmp_path / "code", tmp_path / f"{module}-first-call"
    with zipfile.ZipFile(code_zip) as zf:
        zf.extractall(code)
    (code / f"{module}.py").write_text(
        "import os, sys, time\nimport index\n"
        "def handler(event, context):\n"
        f"    if not os.path.exists({str(marker)!r}):\n"
        f"        open({str(marker)!r}, 'w').write({marker_text})\n"
        f"        {first_call}\n"
        "    return index.handler(event, context)\n")
    return code, marker
