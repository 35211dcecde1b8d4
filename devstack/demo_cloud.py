"""The demo's cloud side: s.demo.yaml deployed to the local cloud, its trigger followed, the alert mail awaited.

s.demo.yaml extends the repository's s.yaml (README, "Local cloud"); the demo exports what s.yaml asks a user to
export and deploys it with `sls-kafka dev deploy`, as a user would.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from aliyun.log import LogClient

from devstack import stack
from devstack.fc.cloud import LOCAL_ACCOUNT_ID
from devstack.fc.spec import FunctionSpec, load
from devstack.smtp import StoredMail, read_info, read_mail
from processor.packaging import PROJECT_PATHS, build_package

REPO = Path(__file__).resolve().parents[1]
S_DEMO = REPO / "s.demo.yaml"
TRIGGER_LOGSTORE = "trigger-log"
LOCAL = "localhost,127.0.0.1"
# The text part's rule line (alerting/templates/email.txt.j2) of a firing or repeated alert.
_FIRING = re.compile(r"^Rule:\s+(\S+) \([^)]*\), (?:firing|repeat)", re.MULTILINE)
MAIL_FROM, MAIL_TO = "fleet-alerts@demo.local", "ops@demo.local"


def package(state_dir: Path) -> Path:
    """This checkout as FC code, built once per content of the sources (a build takes ~10 s of the demo)."""
    digest = hashlib.sha256()
    for path in sorted(f for name in (*PROJECT_PATHS, "pyproject.toml") for f in _files(REPO / name)):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    output = state_dir / "demo" / f"fc-code-{digest.hexdigest()[:16]}.zip"
    if output.exists():
        return output
    for stale in output.parent.glob("fc-code-*.zip"):
        stale.unlink()
    return build_package(REPO, output, "3.10").path


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return [f for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts]


def deploy_env(bootstrap: str, sls_port: int, state_dir: Path, project: str, logstore: str, topic: str,
               code: Path) -> dict[str, str]:
    """What a user exports before deploying s.yaml, for the dev stack (PLAINTEXT Kafka, no VPC, dev SMTP)."""
    smtp = read_info(stack.smtp_state_dir(state_dir))
    if smtp is None:
        msg = "the dev SMTP server has not written its server.json"
        raise RuntimeError(msg)
    proxy = f"http://127.0.0.1:{sls_port}"
    return {"SLS_REGION": "cn-hangzhou", "SLS_PROJECT": project, "SLS_LOGSTORE": logstore,
            "SLS_TRIGGER_LOGSTORE": TRIGGER_LOGSTORE, "FUNCTION_ROLE_NAME": "sls-kafka-processor",
            "VPC_ID": "", "VSWITCH_ID": "", "SECURITY_GROUP_ID": "", "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_TOPIC": topic, "KAFKA_SECURITY_PROTOCOL": "", "KAFKA_SASL_MECHANISM": "",
            "KAFKA_SASL_USERNAME": "", "KAFKA_SASL_PASSWORD": "", "SMTP_HOST": smtp["host"],
            "SMTP_PORT": str(smtp["port"]), "SMTP_CA_FILE": smtp["cert"], "SMTP_USERNAME": "", "SMTP_PASSWORD": "",
            "ALERT_MAIL_FROM": MAIL_FROM, "ALERT_MAIL_TO": MAIL_TO, "DEMO_CODE_ZIP": str(code),
            # The SLS emulator is reached as a proxy, by the demo, the local cloud and its instances alike.
            "HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": LOCAL, "no_proxy": LOCAL}


def functions(env: dict[str, str]) -> list[FunctionSpec]:
    """s.demo.yaml's functions as the deploy will see them."""
    return load(S_DEMO, {**os.environ, **env}, LOCAL_ACCOUNT_ID)


def deploy(env: dict[str, str], state_dir: Path, fc_port: int) -> None:
    """`sls-kafka dev deploy s.demo.yaml`; its output is the demo's."""
    full_env = {**os.environ, **env}
    command = [sys.executable, "-m", "processor", "dev", "deploy", str(S_DEMO), "--state-dir", str(state_dir),
               "--fc-port", str(fc_port)]
    proc = subprocess.run(command, cwd=REPO, env=full_env, capture_output=True, text=True, check=False)
    print("\n".join(f"   {line}" for line in proc.stdout.splitlines()), flush=True)
    if proc.returncode != 0:
        msg = f"`sls-kafka dev deploy` exited {proc.returncode}: {proc.stderr.strip()}"
        raise RuntimeError(msg)


def end_cursors(client: LogClient, project: str, logstore: str) -> dict[int, str]:
    shards = client.list_shards(project, logstore).get_shards_info()
    return {int(s["shardID"]): client.get_end_cursor(project, logstore, s["shardID"]).get_cursor() for s in shards}


def trigger_log(client: LogClient, project: str) -> list[dict[str, str]]:
    """The trigger's execution records (logConfig's logstore), oldest first within a shard."""
    records: list[dict[str, str]] = []
    for shard, end in end_cursors(client, project, TRIGGER_LOGSTORE).items():
        cursor = client.get_begin_cursor(project, TRIGGER_LOGSTORE, shard).get_cursor()
        while cursor != end:
            response = client.pull_logs(project, TRIGGER_LOGSTORE, shard, cursor, 1000, end)
            records += [{k: v for k, v in log.items() if not k.startswith("__")}
                        for log in response.get_flatten_logs_json()]
            cursor = response.get_next_cursor()
    return records


def wait_delivered(client: LogClient, project: str, logstore: str, starts: dict[int, str],
                   timeout: float) -> list[dict[str, str]]:
    """Wait until the trigger's log shows a successful invocation up to every written shard's end cursor."""
    ends = end_cursors(client, project, logstore)
    pending = {shard for shard, end in ends.items() if end != starts.get(shard)}
    deadline = time.monotonic() + timeout
    while True:
        log = trigger_log(client, project)
        done = {int(r["shardId"]) for r in log
                if r["status"] == "success" and r["endCursor"] == ends.get(int(r["shardId"]))}
        if pending <= done or time.monotonic() > deadline:
            return log
        time.sleep(0.5)


def wait_for_alerts(state_dir: Path, seen: int, rule: str, keys: set[str], timeout: float) -> list[StoredMail]:
    """Wait until the mails after the `seen` ones that report `rule` firing list every one of `keys` (each digest
    lists its window's keys); returns those mails, however many keys they list by then."""
    mail_dir = stack.smtp_state_dir(state_dir) / "mail"
    deadline = time.monotonic() + timeout
    while True:
        mails = [m for m in read_mail(mail_dir)[seen:] if _FIRING.search(m.text()) and _rule(m) == rule]
        if keys <= alerted_keys(mails) or time.monotonic() > deadline:
            return mails
        time.sleep(0.5)


def alerted_keys(mails: list[StoredMail]) -> set[str]:
    """The keys the digests list under "N in this alert:" (one `  key: value` line each)."""
    keys: set[str] = set()
    for mail in mails:
        listing = mail.text().partition(" in this alert:\n")[2].partition("\n\n")[0]
        keys.update(line.strip().rpartition(":")[0] for line in listing.splitlines() if line.strip())
    return keys


def _rule(mail: StoredMail) -> str:
    m = _FIRING.search(mail.text())
    return m[1] if m else ""


def mail_count(state_dir: Path) -> int:
    return len(read_mail(stack.smtp_state_dir(state_dir) / "mail"))
