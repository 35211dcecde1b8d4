"""Every environment variable the processor reads, in one place.

`VARIABLES` is the single source of truth: `config.Settings.from_env` reads only these names, the README's
configuration table lists them, and a test checks that `s.yaml` sets each one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    name: str
    default: str | None
    help: str
    aliases: tuple[str, ...] = ()
    secret: bool = False


VARIABLES: tuple[Variable, ...] = (
    Variable("KAFKA_BOOTSTRAP_SERVERS", None, "Kafka bootstrap servers, host:port[,host:port]. Required.",
             aliases=("BOOTSTRAP_SERVERS",)),
    Variable("KAFKA_TOPIC", None, "Topic the projected records go to. Required.", aliases=("TOPIC_NAME",)),
    Variable("KAFKA_DLQ_TOPIC", "", "Dead-letter topic for records that cannot be projected or delivered "
             "(default: `<KAFKA_TOPIC>.dlq`)."),
    Variable("KAFKA_KEY_FIELD", "carID", "Projected field whose value is the message key, so one vehicle's "
             "records stay ordered in one partition. Empty: no key."),
    Variable("KAFKA_SECURITY_PROTOCOL", "", "librdkafka `security.protocol`, e.g. SASL_SSL for Alibaba Cloud Kafka."),
    Variable("KAFKA_SASL_MECHANISM", "", "librdkafka `sasl.mechanism`, e.g. PLAIN or SCRAM-SHA-256."),
    Variable("KAFKA_SASL_USERNAME", "", "librdkafka `sasl.username`."),
    Variable("KAFKA_SASL_PASSWORD", "", "librdkafka `sasl.password` (never logged).", secret=True),
    Variable("KAFKA_PRODUCER_CONFIG", "{}", "JSON object passed to librdkafka as is, for anything else "
             '(e.g. `{"compression.type":"lz4","linger.ms":20,"ssl.ca.location":"/code/ca.pem"}`).'),
    Variable("DELIVERY_MODE", "at-least-once", "`at-least-once` (idempotent producer, cursor saved after Kafka "
             "confirms a batch) or `exactly-once` (records and cursor in one Kafka transaction)."),
    Variable("KAFKA_CHECKPOINT_TOPIC", "sls-kafka-checkpoints", "Compacted topic holding cursors in "
             "exactly-once mode."),
    Variable("KAFKA_TRANSACTION_MAX_RECORDS", "50000", "Exactly-once: most records in one transaction."),
    Variable("KAFKA_TRANSACTION_TIMEOUT_MS", "60000", "Exactly-once: librdkafka `transaction.timeout.ms`."),
    Variable("PROJECTION_FIELDS", "speed:number,carID:int", "Fields to keep: `name[:type][?][=output]`, comma "
             "separated. Types: int, float, number, str, bool, any. `?` marks a field optional. Metadata: "
             "`__time__`, `__time_ns__`, `__topic__`, `__source__`, `__tag__:<key>`."),
    Variable("LOG_FORMAT", "auto", "`kv` (one SLS content per field), `json` (a JSON document in "
             "LOG_JSON_FIELD, as Logtail's simple mode ships JSON lines) or `auto` (json when that field exists)."),
    Variable("LOG_JSON_FIELD", "content", "Content key holding the JSON document for LOG_FORMAT json/auto."),
    Variable("DEAD_LETTER_TOLERANCE", "page", "Which projection rejects stop the invocation instead of going to "
             "the dead-letter topic: `page` (a page of two or more records all rejected for one and the same reason, "
             "as a misspelt field name causes), `none` (any reject) or `all` (none: every reject is dead-lettered). "
             "A stopped page is neither produced nor checkpointed."),
    Variable("SLS_PULL_COUNT", "1000", "Most log groups per PullLogs request (1-1000); fewer when a page "
             "would pass ~2 MB uncompressed."),
    Variable("SLS_COMPRESSION", "lz4", "PullLogs transfer compression: lz4, zstd or none."),
    Variable("SLS_INVALID_CURSOR_POLICY", "begin", "When a cursor points at expired data: `begin` (continue at "
             "the oldest data still kept, report the gap), `fail` (stop with an error) or `end` (skip the rest "
             "of the range, report the gap)."),
    Variable("CHECKPOINT_STORE", "file", "Where the next cursor per shard is kept: `file`, `sls` (an SLS "
             "consumer group, shared by all FC instances) or `kafka` (exactly-once mode)."),
    Variable("CHECKPOINT_DIR", "", "Directory for the file store (default: `$XDG_STATE_HOME` or "
             "`~/.local/state`/sls-kafka-processor, `/tmp/sls-kafka-processor` on FC)."),
    Variable("SLS_CONSUMER_GROUP", "sls-kafka-processor", "Consumer group the `sls` checkpoint store writes."),
    Variable("INVOCATION_TIMEOUT_SECONDS", "600", "Time budget when the FC context does not give the "
             "function timeout (local runs)."),
    Variable("TIME_BUDGET_MARGIN_SECONDS", "10", "Stop this long before the FC timeout so progress is saved and "
             "the invocation fails cleanly instead of being killed. At most 20% of the timeout is used (a warning "
             "says so when more is set)."),
    Variable("ALERT_RULES", "", "Alert rules file (YAML, see Alerts); set: each page's partial aggregates go to "
             "ALERT_PARTIALS_TOPIC for the evaluator. Relative to the working directory (`/code` on FC). Empty: off."),
    Variable("ALERT_PARTIALS_TOPIC", "sls-kafka-alert-partials", "Topic of the alert rules' partial aggregates "
             "(one record per page; compacted or deleted after a day)."),
    Variable("LOG_LEVEL", "INFO", "Python logging level of the function and of `run` and `backfill` (`-v`: DEBUG)."),
)

BY_NAME: dict[str, Variable] = {v.name: v for v in VARIABLES}
