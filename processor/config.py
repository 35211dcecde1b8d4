"""Configuration as frozen dataclasses, read from the environment and validated once at start-up."""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import orjson

from processor.errors import ConfigError
from processor.settings import BY_NAME

FieldType = Literal["int", "float", "number", "str", "bool", "any"]
FIELD_TYPES: tuple[str, ...] = ("int", "float", "number", "str", "bool", "any")
LogFormat = Literal["auto", "kv", "json"]
DeliveryMode = Literal["at-least-once", "exactly-once"]
InvalidCursorPolicy = Literal["begin", "fail", "end"]

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
        key_field = r.text("KAFKA_KEY_FIELD") or None
        projection = ProjectionConfig(
            fields=parse_fields(r.text("PROJECTION_FIELDS")),
            log_format=r.choice("LOG_FORMAT", ("auto", "kv", "json")),  # type: ignore[arg-type]
            json_field=r.nonempty("LOG_JSON_FIELD"),
            key_field=key_field,
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
        )
        return replace(self, kafka=kafka, projection=projection)


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
    """Reads the variables declared in processor.settings, so a typo in a name fails loudly here."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

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
        for key in ("bootstrap.servers", "enable.idempotence", "acks", "transactional.id"):
            if key in options:
                msg = f"{used} must not set {key!r}: it is managed by the processor"
                raise ConfigError(msg)
        for var, key in (("KAFKA_SECURITY_PROTOCOL", "security.protocol"), ("KAFKA_SASL_MECHANISM", "sasl.mechanism"),
                         ("KAFKA_SASL_USERNAME", "sasl.username"), ("KAFKA_SASL_PASSWORD", "sasl.password")):
            if self.text(var):
                options[key] = self.text(var)
        return options
