"""`s.yaml` (Serverless Devs fc3) read the way `s deploy` reads it: variables resolved, fc3 resources as specs.

`extend: base.yaml` (Serverless Devs 3) reads the base file first and merges this one over it: mappings key by
key, anything else replaced. `${env(NAME)}`, `${vars.path}` and `${config('AccountID')}` are resolved; a value
that is one whole `${...}` keeps the resolved value's type (`timeout: ${vars.timeout}` stays a number). Anything
not resolvable is refused with the YAML path and the expression, before any process starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common.errors import ConfigError

_EXPR = re.compile(r"\$\{\s*([^}]*?)\s*\}")
_ENV = re.compile(r"""env\(\s*['"]?([A-Za-z_][A-Za-z0-9_]*)['"]?\s*\)""")
_CONFIG = re.compile(r"""config\(\s*['"]?([A-Za-z]+)['"]?\s*\)""")
_RUNTIME = re.compile(r"python(3\.\d+)")
# FC's timer also takes six-field cron; the local cloud runs only the cadence form and refuses the rest.
_EVERY = re.compile(r"@every\s+(\d+)([smh])")
_UNIT = {"s": 1, "m": 60, "h": 3600}
_HANDLER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\.[A-Za-z_][A-Za-z0-9_]*")
# fc3's defaults for what s.yaml may leave out.
DEFAULT_TIMEOUT = 3.0
DEFAULT_MEMORY = 128
DEFAULT_ASYNC_RETRIES = 3


class DeployError(ConfigError):
    """`s.yaml`, its code or its runtime cannot be deployed; the message names what and where."""


@dataclass(frozen=True)
class TriggerSpec:
    """An SLS ("log") trigger as configured in `triggerConfig`."""

    name: str
    project: str
    logstore: str
    interval: float
    max_retry: int
    parameter: dict[str, Any]
    enabled: bool
    log_project: str | None = None
    log_logstore: str | None = None
    start_time: int | None = None


@dataclass(frozen=True)
class TimerSpec:
    """A timer trigger: `triggerConfig.cronExpression` as a cadence, and its `payload`."""

    name: str
    every: float
    payload: str
    enabled: bool


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    region: str
    account_id: str
    runtime: str
    code: Path
    handler: str
    timeout: float
    memory: int
    instance_concurrency: int
    initializer: str | None
    initializer_timeout: float
    env: Mapping[str, str]
    async_retries: int = DEFAULT_ASYNC_RETRIES
    triggers: tuple[TriggerSpec, ...] = field(default_factory=tuple)
    timers: tuple[TimerSpec, ...] = field(default_factory=tuple)

    @property
    def python_version(self) -> str:
        return _RUNTIME.fullmatch(self.runtime)[1]  # type: ignore[index]  # checked when built


def load(path: Path, env: Mapping[str, str], account_id: str) -> list[FunctionSpec]:
    """The fc3 functions of `path`, resolved against `env` and the local account id."""
    doc = _read(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("resources"), dict):
        msg = f"{path} has no 'resources' mapping: not a Serverless Devs s.yaml"
        raise DeployError(msg)
    resolver = _Resolver(path, env, {"AccountID": account_id})
    resolver.vars = resolver.resolve(doc.get("vars") or {}, "vars")
    functions = []
    for name, resource in doc["resources"].items():
        if isinstance(resource, dict) and str(resource.get("component", "")).startswith("fc3"):
            props = resolver.resolve(resource.get("props") or {}, f"resources.{name}.props")
            functions.append(_function(props, f"{path}: resources.{name}.props", path.parent, account_id))
    if not functions:
        msg = f"{path} has no fc3 resource to deploy"
        raise DeployError(msg)
    return functions


def _read(path: Path, seen: tuple[Path, ...] = ()) -> Any:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        msg = f"cannot read {path}: {exc}"
        raise DeployError(msg) from None
    if not isinstance(doc, dict) or "extend" not in doc:
        return doc
    base = (path.parent / str(doc.pop("extend"))).resolve()
    if base in seen:
        msg = f"{path}: extend: {base} extends itself"
        raise DeployError(msg)
    return _merge(_read(base, (*seen, path.resolve())), doc)


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over


class _Resolver:
    def __init__(self, path: Path, env: Mapping[str, str], config: Mapping[str, str]) -> None:
        self.path, self.env, self.config = path, env, config
        self.vars: Any = {}

    def resolve(self, node: Any, where: str) -> Any:
        if isinstance(node, dict):
            return {k: self.resolve(v, f"{where}.{k}") for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve(v, f"{where}[{i}]") for i, v in enumerate(node)]
        if not isinstance(node, str):
            return node
        whole = _EXPR.fullmatch(node)
        if whole:
            return self._value(whole[1], where)
        return _EXPR.sub(lambda m: str(self._value(m[1], where)), node)

    def _value(self, expr: str, where: str) -> Any:
        if m := _ENV.fullmatch(expr):
            if m[1] not in self.env:
                self._fail(where, expr, f"environment variable {m[1]} is not set (export it, empty if unused)")
            return self.env[m[1]]
        if m := _CONFIG.fullmatch(expr):
            if m[1] not in self.config:
                self._fail(where, expr, f"the local cloud knows only config({', '.join(self.config)})")
            return self.config[m[1]]
        if expr.startswith("vars."):
            node: Any = self.vars
            for part in expr[5:].split("."):
                if not isinstance(node, dict) or part not in node:
                    self._fail(where, expr, f"vars has no '{expr[5:]}'")
                node = node[part]
            return node
        return self._fail(where, expr, "unknown expression (supported: env(NAME), vars.NAME, config('AccountID'))")

    def _fail(self, where: str, expr: str, why: str) -> Any:
        msg = f"{self.path}: {where}: ${{{expr}}}: {why}"
        raise DeployError(msg)


def _function(props: dict[str, Any], where: str, base: Path, account_id: str) -> FunctionSpec:
    def need(key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = props.get(key, default)
        if value is None or not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            msg = f"{where}.{key} is {'missing' if value is None else repr(value)}: expected {_kind(kind)}"
            raise DeployError(msg)
        return value

    runtime = need("runtime", str)
    if not _RUNTIME.fullmatch(runtime):
        msg = f"{where}.runtime {runtime!r}: the local cloud runs only python3.x runtimes"
        raise DeployError(msg)
    handler = need("handler", str)
    if not _HANDLER.fullmatch(handler):
        msg = f"{where}.handler {handler!r}: expected 'file.function', e.g. index.handler"
        raise DeployError(msg)
    hooks = props.get("instanceLifecycleConfig") or {}
    init = hooks.get("initializer") or {}
    env = need("environmentVariables", dict, {})
    async_config = props.get("asyncInvokeConfig") or {}
    return FunctionSpec(
        name=need("functionName", str), region=need("region", str), account_id=account_id, runtime=runtime,
        code=(base / need("code", str)).resolve(), handler=handler,
        timeout=float(need("timeout", (int, float), DEFAULT_TIMEOUT)),
        memory=int(need("memorySize", int, DEFAULT_MEMORY)),
        instance_concurrency=int(need("instanceConcurrency", int, 1)),
        initializer=init.get("handler"), initializer_timeout=float(init.get("timeout", DEFAULT_TIMEOUT)),
        env={str(k): "" if v is None else str(v) for k, v in env.items()},
        async_retries=int(async_config.get("maxAsyncRetryAttempts", DEFAULT_ASYNC_RETRIES)),
        triggers=tuple(_trigger(t, f"{where}.triggers[{i}]")
                       for i, t in enumerate(props.get("triggers") or []) if t.get("triggerType") == "log"),
        timers=tuple(_timer(t, f"{where}.triggers[{i}]")
                     for i, t in enumerate(props.get("triggers") or []) if t.get("triggerType") == "timer"))


def _timer(raw: dict[str, Any], where: str) -> TimerSpec:
    config = raw.get("triggerConfig") or {}
    return TimerSpec(name=str(raw.get("triggerName", "timer")),
                     every=_every_seconds(str(config.get("cronExpression", "")), where),
                     payload=str(config.get("payload") or ""), enabled=config.get("enable", True) is not False)


def _trigger(raw: dict[str, Any], where: str) -> TriggerSpec:
    config = raw.get("triggerConfig") or {}
    arn = str(raw.get("sourceArn", ""))
    project = arn.rpartition(":project/")[2] if ":project/" in arn else ""
    if not project:
        msg = f"{where}.sourceArn {arn!r}: expected acs:log:<region>:<account>:project/<project>"
        raise DeployError(msg)
    logstore = (config.get("sourceConfig") or {}).get("logstore")
    job = config.get("jobConfig") or {}
    interval, retries = job.get("triggerInterval", 60), job.get("maxRetryTime", 3)
    if not isinstance(logstore, str) or not logstore:
        msg = f"{where}.triggerConfig.sourceConfig.logstore is missing"
        raise DeployError(msg)
    if not isinstance(interval, int) or not 3 <= interval <= 600:
        msg = f"{where}.triggerConfig.jobConfig.triggerInterval {interval!r}: expected 3-600 seconds"
        raise DeployError(msg)
    if not isinstance(retries, int) or not 0 <= retries <= 100:
        msg = f"{where}.triggerConfig.jobConfig.maxRetryTime {retries!r}: expected 0-100"
        raise DeployError(msg)
    log_config = config.get("logConfig") or {}
    parameter = config.get("functionParameter") or {}
    if not isinstance(parameter, dict):
        msg = f"{where}.triggerConfig.functionParameter must be a mapping, got {parameter!r}"
        raise DeployError(msg)
    start = (config.get("sourceConfig") or {}).get("startTime")
    return TriggerSpec(name=str(raw.get("triggerName", "sls-trigger")), project=project, logstore=logstore,
                       interval=float(interval), max_retry=retries, parameter=parameter,
                       enabled=config.get("enable", True) is not False,
                       log_project=log_config.get("project") or None, log_logstore=log_config.get("logstore") or None,
                       start_time=int(start) if start is not None else None)


def _every_seconds(expression: str, where: str) -> float:
    # FC's minimum is one minute; seconds are allowed here so that the demo stays short.
    m = _EVERY.fullmatch(expression.strip())
    if not m or int(m[1]) == 0:
        msg = f"{where}.triggerConfig.cronExpression {expression!r}: the local cloud runs only '@every <N>s|m|h'"
        raise DeployError(msg)
    return float(int(m[1]) * _UNIT[m[2]])


def _kind(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "int": "an integer", "float": "a number", "dict": "a mapping"}
                       .get(k.__name__, k.__name__) for k in kinds)
