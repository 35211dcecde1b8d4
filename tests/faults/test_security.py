"""Security: Kafka over SASL (right and wrong password), and no secret in any log line, summary, error or repr.

A second broker with a SASL_PLAINTEXT (PLAIN) listener is started for this module; the SLS side is a
signature-checking emulator with an STS key (secret + security token), as FC hands the function a role's STS
credentials.
"""

from __future__ import annotations

import base64
import gc
import logging
import re
import shutil
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from urllib.parse import quote

import orjson
import pytest
from aliyun.log import LogClient

from common.errors import FatalSinkError, SourceError
from devstack.kafka import KafkaBroker, KafkaBrokerError, KafkaJarsError, create_topics, free_port
from devstack.sls_emulator import EmulatorServer
from processor import handler as fc
from processor.config import Settings
from processor.credentials import Credentials, resolve_credentials
from processor.runtime import Runtime
from tests.kafka_helpers import read_all
from tests.pipeline_support import chunks, fc310_context, fc312_context, json_contents, put_groups, shard_events

SASL_USER = "sls-writer"
# The broker helper accepts letters, digits and ._@- in SASL passwords.
SASL_PASSWORD = "kafka-pw.Q7rX2m@9vLz"
WRONG_SASL_PASSWORD = "not-the-pw.T4k@8wq"
STS_KEY_ID = "STS.NUz8Xq1ZkRoleKey"
STS_SECRET = "sts-secret-9fK2LqPz0aWvB7yE"
STS_TOKEN = "CAIS8gF1q6Ft5B2yfSjIr5bNLtT+gLpQxe6iWxP5p2J/Secr3tT0ken/Zx+QvA=="
WRONG_SLS_SECRET = "wrong-secret-3hJ8nQe1Rt"
SSL_KEY_PASSWORD = "ssl-key-pw.Hy6Tc2"
WRITER_KEY_ID, WRITER_SECRET = "writer-key", "writer-secret-Lm4Px0"
SECRETS = {"SLS access key secret": STS_SECRET, "STS token": STS_TOKEN, "SASL password": SASL_PASSWORD,
           "wrong SASL password": WRONG_SASL_PASSWORD, "wrong SLS secret": WRONG_SLS_SECRET,
           "SSL key password": SSL_KEY_PASSWORD}

# A wrong password must fail the invocation this fast, not after the time budget (60 s here).
AUTH_FAILURE_SECONDS = 15
FUNCTION_TIMEOUT_SECONDS = 60


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A second broker, PLAINTEXT plus a SASL_PLAINTEXT listener for one user; always stopped."""
    broker = KafkaBroker(tmp_path_factory.mktemp("sasl-kafka"), port=free_port(), sasl_users={SASL_USER: SASL_PASSWORD})
    try:
        broker.start()
    except (KafkaBrokerError, KafkaJarsError) as exc:
        broker.kill()
        pytest.fail(f"the SASL test broker could not start: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(broker.data_dir / "kafka-logs", ignore_errors=True)


def failed_authentications(broker: KafkaBroker) -> int:
    """SASL handshakes the broker refused so far (its Selector logs one INFO line per refusal)."""
    return broker.log_path.read_text(errors="replace").count("Failed authentication with")


@pytest.fixture
def sasl_function(sasl_kafka, tmp_path, function_env) -> Callable[..., tuple[str, str]]:
    """Configure the function for the SASL listener: ``configure(mode, password) -> (topic, checkpoint topic)``."""

    def configure(mode: str, password: str = SASL_PASSWORD, **extra: str) -> tuple[str, str]:
        # Topics are made over the PLAINTEXT listener: the test's own plumbing, not what is under test.
        stem = f"sec-{uuid.uuid4().hex[:8]}"
        topic, dlq, ckpt = f"{stem}-data", f"{stem}-dlq", f"{stem}-ckpt"
        create_topics(sasl_kafka.bootstrap, [topic], partitions=2)
        create_topics(sasl_kafka.bootstrap, [dlq], partitions=1)
        create_topics(sasl_kafka.bootstrap, [ckpt], partitions=1, config={"cleanup.policy": "compact"})
        env = {"KAFKA_BOOTSTRAP_SERVERS": sasl_kafka.sasl_bootstrap, "KAFKA_TOPIC": topic, "KAFKA_DLQ_TOPIC": dlq,
               "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN",
               "KAFKA_SASL_USERNAME": SASL_USER, "KAFKA_SASL_PASSWORD": password,
               "DELIVERY_MODE": mode, "KAFKA_CHECKPOINT_TOPIC": ckpt, "KAFKA_TRANSACTION_TIMEOUT_MS": "10000",
               "CHECKPOINT_DIR": str(tmp_path / "ckpt"), "INVOCATION_TIMEOUT_SECONDS": str(FUNCTION_TIMEOUT_SECONDS),
               "TIME_BUDGET_MARGIN_SECONDS": "2", **extra}
        function_env.set(env)
        return topic, ckpt

    return configure


@pytest.fixture
def sts_emulator(sls_proxy_env, monkeypatch) -> Iterator[EmulatorServer]:
    """A signature-checking emulator knowing a writer key and an STS key (secret + token); HTTP_PROXY points at it."""
    with EmulatorServer(credentials={WRITER_KEY_ID: WRITER_SECRET}) as strict:
        strict.auth.add_key(STS_KEY_ID, STS_SECRET, security_token=STS_TOKEN)
        monkeypatch.setenv("HTTP_PROXY", strict.proxy_url)
        monkeypatch.setenv("http_proxy", strict.proxy_url)
        yield strict


def write_driving_logs(endpoint: str, shards: int, records: int) -> tuple[LogClient, str, Counter[bytes]]:
    """A project with one logstore of `shards` shards and `records` JSON logs; returns the expected values."""
    client = LogClient(endpoint, WRITER_KEY_ID, WRITER_SECRET)
    project = f"sec-{uuid.uuid4().hex[:10]}"
    client.create_project(project, "security tests")
    client.create_logstore(project, "driving", ttl=1, shard_count=shards)
    docs = [{"speed": i % 170, "carID": 20_000 + i, "zone": "China"} for i in range(records)]
    put_groups(client, project, "driving", (json_contents(g) for g in chunks(docs, 50)))
    expected = Counter(orjson.dumps({"speed": d["speed"], "carID": d["carID"]}) for d in docs)
    return client, project, expected


def sts_context() -> SimpleNamespace:
    return fc310_context(STS_KEY_ID, STS_SECRET, STS_TOKEN, timeout=FUNCTION_TIMEOUT_SECONDS)


# ----------------------------------------------------------------------------------------------- SASL


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
def test_sasl_right_password_delivers_every_record(mode, sasl_function, sasl_kafka, sts_emulator, sls_proxy_env):
    topic, ckpt = sasl_function(mode)
    client, project, expected = write_driving_logs(sls_proxy_env, shards=2, records=600)
    events = shard_events(client, sls_proxy_env, project, "driving")
    refused_before = failed_authentications(sasl_kafka)

    summaries = [fc.handler(ev, sts_context()) for ev in events]

    assert Counter(r.value for r in read_all(sasl_kafka.bootstrap, topic)) == expected
    assert [s["produced"] for s in summaries] == [300, 300]
    assert failed_authentications(sasl_kafka) == refused_before
    if mode == "exactly-once":
        cursors = {orjson.loads(r.value)["shard"]: orjson.loads(r.value)["cursor"]
                   for r in read_all(sasl_kafka.bootstrap, ckpt)}
        assert cursors == {orjson.loads(ev)["source"]["shardId"]: orjson.loads(ev)["source"]["endCursor"]
                           for ev in events}


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
def test_sasl_wrong_password_fails_fast_naming_authentication_without_retry_storm(
        mode, sasl_function, sasl_kafka, sts_emulator, sls_proxy_env):
    topic, _ = sasl_function(mode, password=WRONG_SASL_PASSWORD)
    client, project, _ = write_driving_logs(sls_proxy_env, shards=1, records=100)
    [event] = shard_events(client, sls_proxy_env, project, "driving")
    refused_before = failed_authentications(sasl_kafka)

    durations, errors = [], []
    for _ in range(2):  # the first invocation and the trigger's retry on a warm instance
        started = time.monotonic()
        with pytest.raises(FatalSinkError) as caught:
            fc.handler(event, sts_context())
        durations.append(time.monotonic() - started)
        errors.append(str(caught.value))

    time.sleep(1)  # let the broker log the last refusals
    refused = failed_authentications(sasl_kafka) - refused_before
    print(f"\nSASL wrong password ({mode}): invocations took {[round(d, 2) for d in durations]} s, "
          f"broker refused {refused} authentication(s); error: {errors[0]}")
    assert all(d < AUTH_FAILURE_SECONDS for d in durations), durations
    assert all(re.search(r"(?i)authenticat", e) for e in errors), errors
    assert all(WRONG_SASL_PASSWORD not in e and SASL_PASSWORD not in e for e in errors)
    # A storm would be a reconnect every backoff for the whole budget; a few attempts per client are fine.
    assert 1 <= refused <= 12, refused
    assert read_all(sasl_kafka.bootstrap, topic) == []


# -------------------------------------------------------------------------------------- secrets scan


def secret_forms(secret: str) -> set[str]:
    """The secret as is, URL-encoded and base64-encoded: the ways a value commonly ends up in a log line."""
    return {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}


def leaks(text: str) -> list[str]:
    return sorted(name for name, secret in SECRETS.items() if any(f in text for f in secret_forms(secret)))


def exception_text(exc: BaseException) -> str:
    """Everything FC would print for a failed invocation: message, repr and the chained traceback."""
    return f"{exc}\n{exc!r}\n{''.join(traceback.format_exception(exc))}"


def test_secrets_never_appear_in_logs_summaries_or_errors(sasl_function, sasl_kafka, sts_emulator, sls_proxy_env,
                                                          caplog, capfd, monkeypatch, tmp_path):
    # Everything at DEBUG: the processor, the SDK, urllib3, tenacity; librdkafka's own debug output on stderr.
    debug = orjson.dumps({"debug": "security,broker,conf,eos"}).decode()
    topic, _ = sasl_function("exactly-once", LOG_LEVEL="DEBUG", KAFKA_PRODUCER_CONFIG=debug)
    caplog.set_level(logging.DEBUG)
    client, project, expected = write_driving_logs(sls_proxy_env, shards=4, records=2000)
    events = shard_events(client, sls_proxy_env, project, "driving")
    sts_emulator.faults.error(op="pull_logs", code="ShardReadQuotaExceed", times=2)
    sts_emulator.faults.drop(op="pull_logs", times=1)
    outputs: list[str] = []

    # A full exactly-once run, credentials from the FC context (python3.10 style).
    outputs += [orjson.dumps(fc.handler(ev, sts_context())).decode() for ev in events]
    # The same through the python3.12 style (ALIBABA_CLOUD_* variables), at-least-once.
    topic_alo, _ = sasl_function("at-least-once", LOG_LEVEL="DEBUG", KAFKA_PRODUCER_CONFIG=debug)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", STS_KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", STS_SECRET)
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", STS_TOKEN)
    outputs += [orjson.dumps(fc.handler(ev, fc312_context(FUNCTION_TIMEOUT_SECONDS))).decode() for ev in events]
    # And a wrong SASL password (a fresh checkpoint directory, so that the range is not already done).
    sasl_function("at-least-once", password=WRONG_SASL_PASSWORD, LOG_LEVEL="DEBUG", KAFKA_PRODUCER_CONFIG=debug,
                  CHECKPOINT_DIR=str(tmp_path / "wrong-password"))
    with pytest.raises(FatalSinkError) as wrong_password:
        fc.handler(events[0], sts_context())
    outputs.append(exception_text(wrong_password.value))
    fc._runtime.close(5)
    # The traceback holds the refused producer; free it so its debug output stays within this test.
    del wrong_password
    gc.collect()

    captured = capfd.readouterr()
    log_text = caplog.text + "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    by_source = {"python log records": log_text, "stdout": captured.out, "stderr (librdkafka)": captured.err,
                 "summaries and errors": "\n".join(outputs)}
    found = {where: leaks(text) for where, text in by_source.items()}
    loggers = Counter(r.name.split(".")[0] for r in caplog.records)
    print(f"\nscanned: {len(caplog.records)} log records {dict(loggers)}, {len(captured.err.splitlines())} stderr "
          f"lines, {len(outputs)} summaries/errors; leaks: {found}")

    # The scan saw a real run: both modes delivered everything, and every channel carried text.
    assert Counter(r.value for r in read_all(sasl_kafka.bootstrap, topic)) == expected
    assert Counter(r.value for r in read_all(sasl_kafka.bootstrap, topic_alo)) == expected
    assert {"processor", "urllib3"} <= set(loggers)
    # librdkafka's configuration dump (debug=conf) was among the scanned lines, with its own redaction.
    assert "sasl.password = [redacted]" in captured.err
    assert found == {where: [] for where in by_source}


def test_repr_of_settings_credentials_and_runtime_hides_secrets():
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "KAFKA_TOPIC": "t", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": SASL_USER, "KAFKA_SASL_PASSWORD": SASL_PASSWORD,
           "KAFKA_PRODUCER_CONFIG": orjson.dumps({"ssl.key.password": SSL_KEY_PASSWORD}).decode()}
    settings = Settings.from_env(env)
    runtime = Runtime(settings)
    creds_env = resolve_credentials(None, {"ALIBABA_CLOUD_ACCESS_KEY_ID": STS_KEY_ID,
                                           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": STS_SECRET,
                                           "ALIBABA_CLOUD_SECURITY_TOKEN": STS_TOKEN})
    creds_ctx = resolve_credentials(sts_context(), {})
    try:
        texts = {"settings": repr(settings), "kafka": repr(settings.kafka), "str(kafka)": str(settings.kafka),
                 "credentials (env)": repr(creds_env), "credentials (context)": repr(creds_ctx),
                 "str(credentials)": str(creds_env), "runtime": repr(runtime), "sink": repr(runtime.sink)}
        # The values are really there (the producer needs them), only never shown.
        assert settings.kafka.producer_config()["sasl.password"] == SASL_PASSWORD
        assert creds_env == Credentials(STS_KEY_ID, STS_SECRET, STS_TOKEN) == creds_ctx
        assert STS_KEY_ID in texts["credentials (env)"]
        assert {name: leaks(text) for name, text in texts.items()} == {name: [] for name in texts}
    finally:
        runtime.close(1)


def test_secret_scan_finds_every_form_of_every_secret():
    # The scanner itself: every form of every secret is found, and text without them is clean.
    for name, secret in SECRETS.items():
        for form in secret_forms(secret):
            assert leaks(f"prefix {form} suffix") == [name]
    assert leaks(f"{STS_KEY_ID} {SASL_USER} {STS_SECRET[:-1]}") == []


def test_wrong_sls_secret_fails_fast_with_401_without_echoing_the_sts_token(sasl_function, sts_emulator,
                                                                            sls_proxy_env, caplog):
    sasl_function("at-least-once", LOG_LEVEL="DEBUG")
    caplog.set_level(logging.DEBUG)
    client, project, _ = write_driving_logs(sls_proxy_env, shards=1, records=10)
    [event] = shard_events(client, sls_proxy_env, project, "driving")
    started = time.monotonic()

    with pytest.raises(SourceError, match=r"SignatureNotMatch \(HTTP 401\).*secret is wrong") as caught:
        fc.handler(event, fc310_context(STS_KEY_ID, WRONG_SLS_SECRET, STS_TOKEN))

    assert time.monotonic() - started < 5
    assert leaks(caplog.text) == []
    assert leaks(exception_text(caught.value)) == []
