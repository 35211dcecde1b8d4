"""Configuration as frozen dataclasses, read from the environment and validated once at start-up.

Long on purpose: one section per dataclass (SLS, source, projection, Kafka, checkpoint, runtime), each with the
checks that name the variable and value a user got wrong; spread over modules they would share every helper.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import orjson
from confluent_kafka import KafkaException, Producer

from common.errors import ConfigError
from processor.variables import BY_NAME

log = logging.getLogger(__name__)

FieldType = Literal["int", "float", "number", "str", "bool", "any"]
FIELD_TYPES: tuple[str, ...] = ("int", "float", "number", "str", "bool", "any")
LogFormat = Literal["auto", "kv", "json"]
DeliveryMode = Literal["at-least-once", "exactly-once"]
InvalidCursorPolicy = Literal["begin", "fail", "end"]
DeadLetterTolerance = Literal["page", "none", "all"]

# `__tag__:<key>` carries a colon of its own, so it is matched before the `:type` suffix.
_FIELD_RE = re.compile(
    r"^(?P<src>__tag__:[^:=?]+|[^:=?]+)(?::(?P<type>[a-z]+))?(?P<opt>\?)?(?:=(?P<out>[^=:?]+))?$"
)
METADATA_FIELDS = ("__time__", "__time_ns__", "__topic__", "__source__")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One projected field: where it comes from, its type, and its name in the output."""

    source: str
    type: FieldType = "any"
    required: bool = True
    output: str = ""

    @property
    def is_metadata(self) -> bool:
        return self.source in METADATA_FIELDS or self.source.startswith("__tag__:")


def parse_fields(spec: str, variable: str = "PROJECTION_FIELDS") -> tuple[FieldSpec, ...]:
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        msg = f"{variable} is empty: name at least one field, e.g. 'speed:number,carID:int'"
        raise ConfigError(msg)
    fields: list[FieldSpec] = []
    for item in items:
        m = _FIELD_RE.match(item)
        if m is None:
            msg = f"{variable}: cannot parse {item!r}; expected name[:type][?][=output], e.g. 'carID:int=car_id'"
            raise ConfigError(msg)
        ftype = m["type"] or "any"
        if ftype not in FIELD_TYPES:
            msg = f"{variable}: field {m['src']!r} has unknown type {ftype!r}; use one of {', '.join(FIELD_TYPES)}"
            raise ConfigError(msg)
        src = m["src"].strip()
        if src.startswith("__") and not (src in METADATA_FIELDS or src.startswith("__tag__:")):
            msg = (f"{variable}: {src!r} is not SLS metadata; metadata fields are "
                   f"{', '.join(METADATA_FIELDS)} and __tag__:<key>")
            raise ConfigError(msg)
        fields.append(FieldSpec(src, ftype, m["opt"] is None, (m["out"] or src).strip()))  # type: ignore[arg-type]
    outputs = [f.output for f in fields]
    dupes = sorted({o for o in outputs if outputs.count(o) > 1})
    if dupes:
        msg = f"{variable}: output name(s) {', '.join(dupes)} appear more than once"
        raise ConfigError(msg)
    return tuple(fields)


@dataclass(frozen=True)
class ProjectionConfig:
    fields: tuple[FieldSpec, ...]
    log_format: LogFormat = "auto"
    json_field: str = "content"
    key_field: str | None = "carID"
    dead_letter_tolerance: DeadLetterTolerance = "page"

    def __post_init__(self) -> None:
        if self.key_field and self.key_field not in {f.output for f in self.fields}:
            names = ", ".join(f.output for f in self.fields)
            msg = f"KAFKA_KEY_FIELD={self.key_field!r} is not a projected field ({names}); add it or set it empty"
            raise ConfigError(msg)


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str
    topic: str
    dlq_topic: str
    delivery_mode: DeliveryMode = "at-least-once"
    checkpoint_topic: str = "sls-kafka-checkpoints"
    transaction_max_records: int = 50_000
    transaction_timeout_ms: int = 60_000
    # repr=False: SASL passwords and SSL key passwords live here.
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def producer_config(self) -> dict[str, Any]:
        """librdkafka settings for the data producer; user options win over our defaults except safety ones."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 262_144,
            **self.options,
        }
        # Not overridable: without these a retry can lose or reorder records.
        conf["enable.idempotence"] = True
        conf["acks"] = "all"
        return conf


@dataclass(frozen=True)
class SourceConfig:
    pull_count: int = 1000
    compression: Literal["lz4", "zstd", "none"] = "lz4"
    invalid_cursor_policy: InvalidCursorPolicy = "begin"


@dataclass(frozen=True)
class CheckpointConfig:
    store: Literal["file", "sls", "kafka"] = "file"
    directory: Path = Path()
    consumer_group: str = "sls-kafka-processor"


@dataclass(frozen=True)
class RuntimeConfig:
    timeout_seconds: float = 600.0
    margin_seconds: float = 10.0
    log_level: str = "INFO"


# At most this share of an invocation's timeout is kept back as the margin; the rest is for the work.
MAX_MARGIN_SHARE = 0.2
_capped_margins_warned: set[tuple[float, float]] = set()


def budget_margin(runtime: RuntimeConfig, timeout: float) -> float:
    """TIME_BUDGET_MARGIN_SECONDS, capped at MAX_MARGIN_SHARE of `timeout` with a warning (once per timeout)."""
    cap = timeout * MAX_MARGIN_SHARE
    if runtime.margin_seconds <= cap:
        return runtime.margin_seconds
    if (runtime.margin_seconds, timeout) not in _capped_margins_warned:
        _capped_margins_warned.add((runtime.margin_seconds, timeout))
        log.warning("TIME_BUDGET_MARGIN_SECONDS=%g is more than %.0f%% of the %g s timeout: invocations stop %g s "
                    "before the timeout instead; set it to at most %g", runtime.margin_seconds,
                    100 * MAX_MARGIN_SHARE, timeout, cap, cap)
    return cap


# Keys of the trigger's `functionParameter` that may override per-trigger settings.
PARAMETER_KEYS = {
    "topic": "KAFKA_TOPIC",
    "dlqTopic": "KAFKA_DLQ_TOPIC",
    "keyField": "KAFKA_KEY_FIELD",
    "fields": "PROJECTION_FIELDS",
    "logFormat": "LOG_FORMAT",
    "jsonField": "LOG_JSON_FIELD",
}


@dataclass(frozen=True)
class Settings:
    kafka: KafkaConfig
    projection: ProjectionConfig
    source: SourceConfig = SourceConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        r = _Reader(env)
        topic = r.required("KAFKA_TOPIC")
        kafka = KafkaConfig(
            bootstrap_servers=r.required("KAFKA_BOOTSTRAP_SERVERS"),
            topic=topic,
            dlq_topic=r.text("KAFKA_DLQ_TOPIC") or f"{topic}.dlq",
            delivery_mode=r.choice("DELIVERY_MODE", ("at-least-once", "exactly-once")),  # type: ignore[arg-type]
            checkpoint_topic=r.text("KAFKA_CHECKPOINT_TOPIC"),
            transaction_max_records=r.integer("KAFKA_TRANSACTION_MAX_RECORDS", 1, 10_000_000),
            transaction_timeout_ms=r.integer("KAFKA_TRANSACTION_TIMEOUT_MS", 1000, 900_000),
            options=r.producer_options(),
        )
        check_producer_settings(kafka, r.option_sources)
        key_field = r.text("KAFKA_KEY_FIELD") or None
        projection = ProjectionConfig(
            fields=parse_fields(r.text("PROJECTION_FIELDS")),
            log_format=r.choice("LOG_FORMAT", ("auto", "kv", "json")),  # type: ignore[arg-type]
            json_field=r.nonempty("LOG_JSON_FIELD"),
            key_field=key_field,
            dead_letter_tolerance=r.choice("DEAD_LETTER_TOLERANCE", ("page", "none", "all")),  # type: ignore[arg-type]
        )
        source = SourceConfig(
            pull_count=r.integer("SLS_PULL_COUNT", 1, 1000),
            compression=r.choice("SLS_COMPRESSION", ("lz4", "zstd", "none")),  # type: ignore[arg-type]
            invalid_cursor_policy=r.choice("SLS_INVALID_CURSOR_POLICY", ("begin", "fail", "end")),  # type: ignore[arg-type]
        )
        if source.compression == "zstd" and importlib.util.find_spec("zstd") is None:
            msg = "SLS_COMPRESSION=zstd needs the `zstd` package (pip install zstd; add it to the FC package)"
            raise ConfigError(msg)
        store = r.choice("CHECKPOINT_STORE", ("file", "sls", "kafka"))
        if store == "kafka" and kafka.delivery_mode != "exactly-once":
            msg = "CHECKPOINT_STORE=kafka needs DELIVERY_MODE=exactly-once (the cursor is written in the transaction)"
            raise ConfigError(msg)
        if kafka.delivery_mode == "exactly-once":
            if store != "kafka" and "CHECKPOINT_STORE" in env:
                msg = (f"DELIVERY_MODE=exactly-once keeps the cursor in Kafka, in the data's transaction: set "
                       f"CHECKPOINT_STORE=kafka (or leave it unset), not {store!r}")
                raise ConfigError(msg)
            store = "kafka"
        checkpoint = CheckpointConfig(
            store=store,  # type: ignore[arg-type]
            directory=Path(r.text("CHECKPOINT_DIR") or _default_state_dir(env)),
            consumer_group=r.nonempty("SLS_CONSUMER_GROUP"),
        )
        runtime = RuntimeConfig(
            timeout_seconds=r.number("INVOCATION_TIMEOUT_SECONDS", 1, 86_400),
            margin_seconds=r.number("TIME_BUDGET_MARGIN_SECONDS", 0, 3600),
            log_level=r.choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), upper=True),
        )
        return cls(kafka, projection, source, checkpoint, runtime)

    def with_parameter(self, parameter: Mapping[str, Any]) -> Settings:
        """Apply a trigger's `functionParameter` overrides (see PARAMETER_KEYS); unknown keys are an error."""
        if not parameter:
            return self
        unknown = sorted(set(parameter) - set(PARAMETER_KEYS))
        if unknown:
            msg = (f"event field 'parameter' has unknown key(s) {', '.join(unknown)}; "
                   f"allowed: {', '.join(sorted(PARAMETER_KEYS))}")
            raise ConfigError(msg)
        for key, value in parameter.items():
            if not isinstance(value, str):
                msg = f"event field 'parameter.{key}' must be a string, got {type(value).__name__}"
                raise ConfigError(msg)
            if not value.strip() and key != "keyField":
                msg = f"event field 'parameter.{key}' is empty"
                raise ConfigError(msg)
        kafka = replace(
            self.kafka,
            topic=parameter.get("topic", self.kafka.topic),
            dlq_topic=parameter.get("dlqTopic", f"{parameter['topic']}.dlq" if "topic" in parameter
                                    else self.kafka.dlq_topic),
        )
        proj = self.projection
        projection = ProjectionConfig(
            fields=parse_fields(parameter["fields"], "parameter.fields") if "fields" in parameter else proj.fields,
            log_format=_check_choice("parameter.logFormat", parameter.get("logFormat", proj.log_format),
                                     ("auto", "kv", "json")),  # type: ignore[arg-type]
            json_field=parameter.get("jsonField", proj.json_field),
            key_field=(parameter["keyField"] or None) if "keyField" in parameter else proj.key_field,
            dead_letter_tolerance=proj.dead_letter_tolerance,
        )
        return replace(self, kafka=kafka, projection=projection)


# librdkafka's other names for the settings the processor manages, and the deprecated nested topic config
# that could set `acks` behind the guard's back.
MANAGED_PRODUCER_KEYS = {
    "bootstrap.servers": "KAFKA_BOOTSTRAP_SERVERS sets it",
    "metadata.broker.list": "librdkafka's other name for bootstrap.servers; KAFKA_BOOTSTRAP_SERVERS sets it",
    "enable.idempotence": "it is always on, so a retry cannot duplicate or reorder records",
    "acks": "it is always 'all', so a confirmed record is on every in-sync replica",
    "request.required.acks": "librdkafka's other name for acks, which is always 'all'",
    "transactional.id": "exactly-once mode derives one per shard",
    "default.topic.config": "it could override acks; put topic settings at the top level",
}
SECRET_PRODUCER_KEYS = ("password", "secret")
# The throw-away producers that check the settings must not log: a config warning there is not the user's.
_QUIET = logging.getLogger("processor.config.producer-check")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def check_producer_settings(kafka: KafkaConfig, sources: Mapping[str, str]) -> None:
    """Build the producers the processor will build (not connected), so librdkafka rejects bad settings now.

    `sources` maps each user-set librdkafka key to the variable that set it; the error names that variable and
    the value. Without this a bad value fails every invocation (and `run` retries it forever) with a bare
    KafkaException naming neither.
    """
    conf = kafka.producer_config()
    defaults = replace(kafka, options={}).producer_config()
    _check_producer(conf, defaults, sources)
    if kafka.delivery_mode == "exactly-once":
        txn = {"transactional.id": "config-check", "transaction.timeout.ms": kafka.transaction_timeout_ms}
        if "message.timeout.ms" in conf:
            # As TransactionalKafkaSink does: a transaction cannot wait for a record longer than it may live.
            txn["message.timeout.ms"] = min(int(conf["message.timeout.ms"]), kafka.transaction_timeout_ms)
        _check_producer({**conf, **txn}, {**defaults, **txn},
                        {**sources, "transaction.timeout.ms": "KAFKA_TRANSACTION_TIMEOUT_MS"})


def _check_producer(full: Mapping[str, Any], base: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    reason = _rejection(full)
    if reason is None:
        return
    for key, variable in sources.items():
        # One setting is to blame when it alone, on the defaults, is refused for the same reason.
        if _rejection({**base, key: full[key]}) == reason:
            msg = f"{_setting(variable, key, full[key])} is rejected by librdkafka: {_masked(reason, full, sources)}"
            raise ConfigError(msg)
    given = "; ".join(_setting(variable, key, full[key]) for key, variable in sources.items())
    msg = (f"librdkafka rejects the producer settings: {_masked(reason, full, sources)} "
           f"(set: {given or 'none; only the processor defaults'})")
    raise ConfigError(msg)


def _rejection(conf: Mapping[str, Any]) -> str | None:
    """librdkafka's reason for refusing `conf`, or None; no bootstrap servers, so nothing is contacted."""
    check = {k: v for k, v in conf.items() if k != "bootstrap.servers"}
    try:
        Producer({**check, "logger": _QUIET})
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        return error.str() if hasattr(error, "str") else str(exc)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def _is_secret(key: str) -> bool:
    return any(word in key for word in SECRET_PRODUCER_KEYS)


def _setting(variable: str, key: str, value: Any) -> str:
    shown = "***" if _is_secret(key) else repr(value)
    if variable == "KAFKA_PRODUCER_CONFIG":
        return f"KAFKA_PRODUCER_CONFIG {key}={shown}"
    return f"{variable}={shown} ({key})"


def _masked(reason: str, conf: Mapping[str, Any], keys: Mapping[str, str]) -> str:
    for key in keys:
        if _is_secret(key) and str(conf[key]):
            reason = reason.replace(str(conf[key]), "***")
    return reason


def json_object(text: str, what: str, example: str) -> dict[str, Any]:
    """Parse a JSON object given in a variable or flag named `what`; anything else is a ConfigError."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        msg = f"{what} is not valid JSON ({exc}); expected an object like {example}"
        raise ConfigError(msg) from None
    if not isinstance(doc, dict):
        msg = f"{what} must be a JSON object, got {type(doc).__name__}"
        raise ConfigError(msg)
    return doc


def _default_state_dir(env: Mapping[str, str]) -> str:
    if "FC_FUNCTION_NAME" in env:
        # On FC only /tmp is writable, and it lives as long as the instance.
        return str(Path(tempfile.gettempdir()) / "sls-kafka-processor")
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "sls-kafka-processor")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        msg = f"{name}={value!r} is not one of {', '.join(choices)}"
        raise ConfigError(msg)
    return value


class _Reader:
    """Reads the variables declared in processor.variables, so a typo in a name fails loudly here."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        # librdkafka key -> the variable that set it, filled by producer_options().
        self.option_sources: dict[str, str] = {}

    def raw(self, name: str) -> tuple[str, str | None]:
        var = BY_NAME[name]
        for n in (name, *var.aliases):
            if n in self._env:
                return n, self._env[n].strip()
        return name, var.default

    def required(self, name: str) -> str:
        _used, value = self.raw(name)
        if not value:
            aliases = BY_NAME[name].aliases
            also = f" (or {', '.join(aliases)})" if aliases else ""
            msg = f"{name}{also} is not set: {BY_NAME[name].help}"
            raise ConfigError(msg)
        return value

    def text(self, name: str) -> str:
        return self.raw(name)[1] or ""

    def nonempty(self, name: str) -> str:
        value = self.text(name)
        if not value:
            msg = f"{name} must not be empty"
            raise ConfigError(msg)
        return value

    def choice(self, name: str, choices: tuple[str, ...], upper: bool = False) -> str:
        used, value = self.raw(name)
        value = (value or "").upper() if upper else (value or "").lower()
        return _check_choice(used, value, choices)

    def integer(self, name: str, lo: int, hi: int) -> int:
        return int(self._ranged(name, lo, hi, int, "a whole number"))

    def number(self, name: str, lo: float, hi: float) -> float:
        return float(self._ranged(name, lo, hi, float, "a number"))

    def _ranged(self, name: str, lo: float, hi: float, cast: type[int] | type[float], kind: str) -> float:
        used, value = self.raw(name)
        try:
            number = cast(value or "")
        except ValueError:
            msg = f"{used}={value!r} is not {kind}"
            raise ConfigError(msg) from None
        if not lo <= number <= hi:
            msg = f"{used}={number} is out of range {lo}..{hi}"
            raise ConfigError(msg)
        return number

    def producer_options(self) -> dict[str, Any]:
        used, value = self.raw("KAFKA_PRODUCER_CONFIG")
        options = json_object(value or "{}", used, '{"linger.ms": 20}')
        for key, why in MANAGED_PRODUCER_KEYS.items():
            if key in options:
                msg = f"{used} must not set {key!r}: it is managed by the processor ({why})"
                raise ConfigError(msg)
        self.option_sources = dict.fromkeys(options, used)
        for var, key in (("KAFKA_SECURITY_PROTOCOL", "security.protocol"), ("KAFKA_SASL_MECHANISM", "sasl.mechanism"),
                         ("KAFKA_SASL_USERNAME", "sasl.username"), ("KAFKA_SASL_PASSWORD", "sasl.password")):
            if self.text(var):
                options[key] = self.text(var)
                self.option_sources[key] = var
        return options
