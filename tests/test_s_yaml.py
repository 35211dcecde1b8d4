"""`s.yaml` against the documented fc3 / SLS-trigger ranges and the processor's own configuration.

Each check returns the problems it finds, so the same checks run on the real file (no problems) and on broken
copies of it (the expected problem), proving that every check can fail.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.errors import ConfigError
from processor import planning
from processor.commands.package import DEFAULT_OUTPUT
from processor.config import Settings
from processor.variables import VARIABLES

ROOT = Path(__file__).resolve().parents[1]
# records/s per shard that s.yaml is sized for (stated in its `vars` comments).
REFERENCE_WRITE_RATE = 1000
_VAR = re.compile(r"^\$\{vars\.(\w+)\}$")
_ENV = re.compile(r"\$\{env\((\w+)\)\}")
# Stand-ins for the deploy-time placeholders, to validate the configuration the function would get.
SAMPLE_ENV = {"KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092", "KAFKA_TOPIC": "vehicles",
              "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN",
              "KAFKA_SASL_USERNAME": "user", "KAFKA_SASL_PASSWORD": "password"}
# FC 3.0 limits on user environment variables.
ENV_TOTAL_LIMIT_BYTES = 4096


def load() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "s.yaml").read_text())


def props(doc: dict[str, Any]) -> dict[str, Any]:
    """The processor function's props (the alert evaluator is the other resource)."""
    return doc["resources"]["sls-kafka-processor"]["props"]


def trigger(doc: dict[str, Any]) -> dict[str, Any]:
    (only,) = props(doc)["triggers"]
    return only


def dig(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def resolve(doc: dict[str, Any], value: Any) -> Any:
    """`${vars.x}` as a whole value becomes the variable itself (Serverless Devs keeps its type)."""
    m = _VAR.match(value) if isinstance(value, str) else None
    return dig(doc, "vars", m[1]) if m else value


def integer_in(doc: dict[str, Any], name: str, value: Any, lo: int, hi: int) -> list[str]:
    value = resolve(doc, value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        return [f"{name}={value!r} is not a whole number in {lo}..{hi}"]
    return []


# ---------------------------------------------------------------------------------------------- checks


def check_shape(doc: dict[str, Any]) -> list[str]:
    problems = []
    if str(doc.get("edition")) != "3.0.0":
        problems.append(f"edition {doc.get('edition')!r} is not 3.0.0")
    resources = doc.get("resources") or {}
    # The processor and the alert evaluator (tests/alerting/test_s_yaml_evaluator.py checks the latter).
    if set(resources) != {"sls-kafka-processor", "sls-kafka-alerts"} or any(
            r.get("component") != "fc3" for r in resources.values()):
        problems.append("expected the resources sls-kafka-processor and sls-kafka-alerts, with component fc3")
    return problems


def check_sizing(doc: dict[str, Any]) -> list[str]:
    p, job = props(doc), dig(trigger(doc), "triggerConfig", "jobConfig") or {}
    problems = []
    for key in ("triggerInterval", "maxRetryTime"):
        if job.get(key) != f"${{vars.{key}}}":
            problems.append(f"jobConfig.{key} must be the one variable ${{vars.{key}}}, got {job.get(key)!r}")
    problems += integer_in(doc, "triggerInterval", job.get("triggerInterval"), *planning.TRIGGER_INTERVAL_RANGE)
    problems += integer_in(doc, "maxRetryTime", job.get("maxRetryTime"), 0, 100)
    problems += integer_in(doc, "timeout", p.get("timeout"), *planning.FC_TIMEOUT_RANGE)
    memory = p.get("memorySize")
    if not isinstance(memory, int) or memory % 64 or not 128 <= memory <= 32768:
        problems.append(f"memorySize={memory!r} is not a multiple of 64 in 128..32768")
    if p.get("instanceConcurrency") != 1:
        problems.append(f"instanceConcurrency={p.get('instanceConcurrency')!r} must be 1: invocations share the "
                        "instance's producer")
    if problems:
        return problems
    interval, timeout = resolve(doc, job["triggerInterval"]), resolve(doc, p["timeout"])
    # s.yaml is sized, as `plan` advises, at the planning default, not at what a benchmark here measured.
    throughput = planning.DEFAULT_THROUGHPUT
    fit = planning.evaluate(planning.Workload(REFERENCE_WRITE_RATE, throughput), interval)
    if not fit.fits:
        problems.append(f"triggerInterval {interval} s does not fit {REFERENCE_WRITE_RATE} records/s per shard "
                        f"({fit.busy:.0%} busy at {throughput:.0f} records/s)")
    if timeout < fit.timeout_seconds:
        problems.append(f"timeout {timeout} s is below the {fit.timeout_seconds} s a {interval} s interval needs "
                        f"at {REFERENCE_WRITE_RATE} records/s per shard (the planning default throughput)")
    return problems


def check_function(doc: dict[str, Any]) -> list[str]:
    p = props(doc)
    problems = []
    if p.get("runtime") != "python3.10":
        problems.append(f"runtime {p.get('runtime')!r} is not python3.10")
    if p.get("code") != f"./{DEFAULT_OUTPUT.as_posix()}":
        problems.append(f"code {p.get('code')!r} is not what `sls-kafka package` builds (./{DEFAULT_OUTPUT})")
    initializer = dig(p, "instanceLifecycleConfig", "initializer") or {}
    # FC calls handler(event, context) and initializer(context).
    problems += check_entry_point("handler", p.get("handler"), (b"{}", None))
    problems += check_entry_point("initializer", initializer.get("handler"), (None,))
    problems += integer_in(doc, "initializer timeout", initializer.get("timeout"), 1, 86_400)
    vpc = p.get("vpcConfig") or {}
    if not (vpc.get("vpcId") and vpc.get("securityGroupId") and isinstance(vpc.get("vSwitchIds"), list)
            and vpc["vSwitchIds"]):
        problems.append("vpcConfig needs vpcId, securityGroupId and a vSwitchIds list")
    if not str(p.get("role", "")).startswith("acs:ram::"):
        problems.append(f"role {p.get('role')!r} is not a RAM role ARN")
    return problems


def check_entry_point(what: str, name: Any, args: tuple[Any, ...]) -> list[str]:
    if not isinstance(name, str) or "." not in name:
        return [f"{what} {name!r} is not <module>.<function>"]
    module, attr = name.rsplit(".", 1)
    try:
        target = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        return [f"{what} {name} does not import: {exc}"]
    if not callable(target):
        return [f"{what} {name} is not callable"]
    try:
        inspect.signature(target).bind(*args)
    except TypeError as exc:
        return [f"{what} {name} cannot take FC's {len(args)} argument(s): {exc}"]
    return []


def check_environment(doc: dict[str, Any]) -> list[str]:
    p = props(doc)
    env = p.get("environmentVariables") or {}
    known = {v.name for v in VARIABLES}
    problems = [f"environmentVariables misses {name}" for name in sorted(known - set(env))]
    problems += [f"environmentVariables sets unknown {name}" for name in sorted(set(env) - known)]
    problems += [f"{k}={v!r} is not a string (FC wants string values)"
                 for k, v in env.items() if not isinstance(v, str)]
    problems += [f"{v.name} is a secret and must be ${{env({v.name})}}, not written in the file"
                 for v in VARIABLES if v.secret and env.get(v.name) != f"${{env({v.name})}}"]
    if len(yaml.safe_dump(env)) > ENV_TOTAL_LIMIT_BYTES:
        problems.append(f"environmentVariables exceed FC's {ENV_TOTAL_LIMIT_BYTES} bytes")
    if env.get("CHECKPOINT_STORE") != "sls":
        problems.append("CHECKPOINT_STORE should be sls on FC: the file store lives in one instance's /tmp")
    if str(env.get("INVOCATION_TIMEOUT_SECONDS")) != str(resolve(doc, p.get("timeout"))):
        problems.append(f"INVOCATION_TIMEOUT_SECONDS={env.get('INVOCATION_TIMEOUT_SECONDS')!r} differs from the "
                        f"function timeout {resolve(doc, p.get('timeout'))!r}")
    if problems:
        return problems
    sample = {k: _ENV.sub(lambda m: SAMPLE_ENV.get(m[1], f"sample-{m[1]}"), v) for k, v in env.items()}
    try:
        settings = Settings.from_env(sample)
        settings.with_parameter(dig(trigger(doc), "triggerConfig", "functionParameter") or {})
    except ConfigError as exc:
        problems.append(f"the function would reject this configuration: {exc}")
    return problems


def check_trigger(doc: dict[str, Any]) -> list[str]:
    t, p = trigger(doc), props(doc)
    config = t.get("triggerConfig") or {}
    problems = []
    if t.get("triggerType") != "log":
        problems.append(f"triggerType {t.get('triggerType')!r} is not log")
    arn = re.fullmatch(r"acs:log:([^:]+):([^:]+):project/(.+)", str(t.get("sourceArn")))
    if arn is None or arn[1] != p.get("region"):
        problems.append(f"sourceArn {t.get('sourceArn')!r} is not acs:log:<function region>:<account>:project/<name>")
    if not str(t.get("invocationRole", "")).startswith("acs:ram::"):
        problems.append(f"invocationRole {t.get('invocationRole')!r} is not a RAM role ARN")
    if config.get("enable") is not True:
        problems.append("triggerConfig.enable is not true")
    if not dig(config, "sourceConfig", "logstore"):
        problems.append("triggerConfig.sourceConfig.logstore is not set")
    log_config = config.get("logConfig") or {}
    if not (log_config.get("project") and log_config.get("logstore")):
        problems.append("triggerConfig.logConfig needs project and logstore")
    elif arn is not None and log_config["project"] != arn[3]:
        problems.append("triggerConfig.logConfig.project is not the source project")
    if not isinstance(config.get("functionParameter"), dict):
        problems.append("triggerConfig.functionParameter is not a mapping")
    return problems


def check_no_literal_ids(text: str) -> list[str]:
    # Alibaba Cloud account ids are 16 digits; they come from ${config('AccountID')}.
    return [f"literal account id {m} (use ${{config('AccountID')}})" for m in re.findall(r"\b\d{16}\b", text)]


CHECKS = (check_shape, check_sizing, check_function, check_environment, check_trigger)


def problems(doc: dict[str, Any]) -> list[str]:
    found = [p for check in CHECKS for p in check(doc)]
    return found + check_no_literal_ids(yaml.safe_dump(doc))


# ---------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_s_yaml_passes(check):
    assert check(load()) == []


def test_s_yaml_no_literal_account_id():
    assert check_no_literal_ids((ROOT / "s.yaml").read_text()) == []


def test_s_yaml_placeholders_stay_strings():
    doc = load()
    assert props(doc)["environmentVariables"]["KAFKA_SASL_PASSWORD"] == "${env(KAFKA_SASL_PASSWORD)}"
    assert dig(trigger(doc), "triggerConfig", "jobConfig", "triggerInterval") == "${vars.triggerInterval}"


DELETE = object()


def edit(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set (or DELETE) `vars.x`, `props.a.b` or `trigger.a.b` in a loaded s.yaml."""
    head, *keys = path.split(".")
    node = {"vars": doc["vars"], "props": props(doc), "trigger": trigger(doc), "doc": doc}[head]
    for key in keys[:-1]:
        node = node[key]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value


ENV = "props.environmentVariables"
JOB = "trigger.triggerConfig.jobConfig"
BROKEN = [
    ("doc.edition", "1.0.0", "edition"),
    ("vars.triggerInterval", 2, "triggerInterval=2 is not"),
    ("vars.triggerInterval", 601, "triggerInterval=601 is not"),
    ("vars.triggerInterval", "60", "triggerInterval='60' is not"),
    (f"{JOB}.triggerInterval", 60, "must be the one variable"),
    (f"{JOB}.maxRetryTime", 3, "must be the one variable"),
    ("vars.maxRetryTime", 101, "maxRetryTime=101"),
    ("vars.maxRetryTime", -1, "maxRetryTime=-1"),
    ("vars.timeout", 30, "timeout 30 s is below"),
    ("vars.timeout", 86_401, "timeout=86401"),
    ("vars.triggerInterval", 3, "does not fit"),  # 53 % busy at the default throughput
    ("props.memorySize", 1000, "memorySize=1000"),
    ("props.instanceConcurrency", 4, "instanceConcurrency=4"),
    ("props.memorySize", 64, "memorySize=64"),
    ("props.memorySize", 32832, "memorySize=32832"),
    ("props.runtime", "python3.12", "runtime"),
    ("props.code", "./code", "sls-kafka package"),
    ("props.handler", "index.missing", "does not import"),
    ("props.handler", "nosuchmodule.handler", "does not import"),
    ("props.handler", "processor.variables.VARIABLES", "not callable"),
    ("props.handler", "index.initialize", "cannot take FC's 2"),
    ("props.handler", "handler", "not <module>.<function>"),
    ("props.instanceLifecycleConfig.initializer.handler", "index.nope", "initializer index.nope does not import"),
    ("props.instanceLifecycleConfig.initializer.timeout", 0, "initializer timeout=0"),
    ("props.vpcConfig.vSwitchIds", "vsw-1", "vpcConfig"),
    ("props.role", "fc-role", "role"),
    (f"{ENV}.KAFKA_TOPIC", DELETE, "misses KAFKA_TOPIC"),
    (f"{ENV}.KAFKA_TOPICS", "x", "unknown KAFKA_TOPICS"),
    (f"{ENV}.KAFKA_SASL_PASSWORD", "hunter2", "KAFKA_SASL_PASSWORD is a secret"),
    (f"{ENV}.SLS_PULL_COUNT", 1000, "not a string"),
    (f"{ENV}.CHECKPOINT_STORE", "file", "CHECKPOINT_STORE should be sls"),
    (f"{ENV}.DELIVERY_MODE", "at-most-once", "would reject"),
    (f"{ENV}.SLS_PULL_COUNT", "5000", "would reject"),
    (f"{ENV}.PROJECTION_FIELDS", "speed:number", "would reject"),  # key field carID no longer projected
    (f"{ENV}.KAFKA_PRODUCER_CONFIG", "x" * 5000, "exceed FC's"),
    (f"{ENV}.INVOCATION_TIMEOUT_SECONDS", "600", "differs from the function timeout"),
    ("trigger.triggerType", "timer", "triggerType"),
    ("trigger.sourceArn", "acs:log:cn-hangzhou::project/p", "sourceArn"),
    ("trigger.invocationRole", "aliyunlogetlrole", "invocationRole"),
    ("trigger.triggerConfig.enable", DELETE, "enable"),
    ("trigger.triggerConfig.sourceConfig.logstore", "", "sourceConfig.logstore"),
    ("trigger.triggerConfig.logConfig.logstore", DELETE, "logConfig needs"),
    ("trigger.triggerConfig.logConfig.project", "other", "not the source project"),
    ("trigger.triggerConfig.functionParameter", {"topik": "x"}, "would reject"),
    ("trigger.triggerConfig.functionParameter", None, "functionParameter is not a mapping"),
    ("props.role", "acs:ram::1234567890123456:role/fc", "literal account id"),
]


@pytest.mark.parametrize(("path", "value", "expected"), BROKEN, ids=[f"{p}={v!r}"[:60] for p, v, _ in BROKEN])
def test_s_yaml_checks_catch_broken_copy(path, value, expected):
    doc = copy.deepcopy(load())
    edit(doc, path, value)
    found = problems(doc)
    assert any(expected in p for p in found), found
