"""Per-instance state built once (config, producer, stores) and the per-invocation run over one range."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from aliyun.log import LogClient

from checkpoints.base import CheckpointKey, CheckpointStore
from checkpoints.file import FileCheckpointStore
from checkpoints.kafka_txn import KafkaCheckpointStore
from checkpoints.sls_consumer_group import SlsConsumerGroupStore
from processor.config import Settings, budget_margin
from processor.credentials import Credentials
from processor.deadline import Deadline
from processor.endpoint import check_endpoint
from processor.errors import ProcessorError
from processor.event import TriggerEvent
from processor.pipeline import RangePipeline, Summary
from processor.projection import Projector
from processor.retry import DeadlineLogClient, RetryStats, is_transient_sls_error, sls_retrying
from processor.sink import KafkaSink, TransactionalKafkaSink
from processor.source import MAX_PAGE_BYTES
from processor.transactional import ExactlyOncePipeline

log = logging.getLogger(__name__)

# Transactional producers kept per instance; each holds connections and a producer id.
MAX_WARM_PRODUCERS = 8
SLS_REQUEST_TIMEOUT_SECONDS = 30


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _clean(exc: BaseException, secrets: tuple[str, ...]) -> bool:
    return not any(s in str(e) for e in _chain(exc) for s in secrets)


def _masked(exc: ProcessorError, secrets: tuple[str, ...]) -> ProcessorError:
    text = str(exc)
    for secret in secrets:
        text = text.replace(secret, "***")
    return type(exc)(text)


class Runtime:
    """Everything an FC instance (or a poller process) keeps between invocations."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        conf = settings.kafka.producer_config()
        # Undelivered records must not outlive the invocation that produced them.
        conf.setdefault("message.timeout.ms", int(max(settings.runtime.timeout_seconds, 10) * 1000))
        self._producer_config = conf
        self.sink = KafkaSink(conf)
        self._file_store = FileCheckpointStore(settings.checkpoint.directory)
        self._projectors: dict[tuple[Any, ...], Projector] = {}
        self._txn_sinks: OrderedDict[str, TransactionalKafkaSink] = OrderedDict()
        self._kafka_store: KafkaCheckpointStore | None = None
        self._sls_store: SlsConsumerGroupStore | None = None
        self._client: tuple[tuple[str, ...], LogClient] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Runtime:
        return cls(Settings.from_env(env))

    def sls_client(self, endpoint: str, creds: Credentials) -> LogClient:
        """One client per endpoint and credentials; a rotated STS token gets a fresh client."""
        ident = (endpoint, creds.access_key_id, creds.access_key_secret, creds.security_token or "")
        if self._client is None or self._client[0] != ident:
            client = LogClient(endpoint, creds.access_key_id, creds.access_key_secret, creds.security_token)
            # The SDK waits up to 120 s per request; an invocation's requests are bounded by its deadline too
            # (`DeadlineLogClient`), this caps each one where no deadline applies.
            client.timeout = SLS_REQUEST_TIMEOUT_SECONDS
            self._client = (ident, client)
        return self._client[1]

    def checkpoint_store(self, client: LogClient) -> CheckpointStore:
        if self.settings.checkpoint.store == "kafka":
            if self._kafka_store is None:
                self._kafka_store = KafkaCheckpointStore(self.settings.kafka.producer_config(),
                                                         self.settings.kafka.checkpoint_topic)
            return self._kafka_store
        if self.settings.checkpoint.store == "sls":
            # Kept per client so the consumer group is created once, not per invocation.
            if self._sls_store is None or self._sls_store.client is not client:
                self._sls_store = SlsConsumerGroupStore(client, self.settings.checkpoint.consumer_group)
            return self._sls_store
        return self._file_store

    def transactional_sink(self, key: CheckpointKey) -> TransactionalKafkaSink:
        """One producer per transactional id (project/logstore/shard[/scope]), a few kept warm per instance."""
        tid = f"sls-kafka/{key}"
        sink = self._txn_sinks.pop(tid, None)
        if sink is None:
            kafka = self.settings.kafka
            sink = TransactionalKafkaSink(self._producer_config, tid, kafka.transaction_timeout_ms)
        self._txn_sinks[tid] = sink
        while len(self._txn_sinks) > MAX_WARM_PRODUCERS:
            _, old = self._txn_sinks.popitem(last=False)
            old.close(0)
        return sink

    def projector(self, settings: Settings) -> Projector:
        p = settings.projection
        ident = (p.fields, p.log_format, p.json_field, p.key_field)
        if ident not in self._projectors:
            self._projectors[ident] = Projector(p)
        return self._projectors[ident]

    def deadline(self, timeout_seconds: float | None) -> Deadline:
        timeout = timeout_seconds or self.settings.runtime.timeout_seconds
        margin = budget_margin(self.settings.runtime, timeout)
        return Deadline.after(timeout - margin)

    def close(self, timeout: float = 10.0) -> None:
        """Flush and close every producer and the checkpoint reader (end of a poller or test)."""
        self.sink.close(timeout)
        for sink in self._txn_sinks.values():
            sink.close(timeout)
        self._txn_sinks.clear()
        if self._kafka_store is not None:
            self._kafka_store.close()

    def process(self, event: TriggerEvent, creds: Credentials, timeout_seconds: float | None = None,
                scope: str = "") -> Summary:
        settings = self.settings.with_parameter(event.parameter)
        if not scope and "topic" in event.parameter:
            # Triggers on one logstore that feed different topics must not share (and skip by) one checkpoint.
            scope = f"topic-{settings.kafka.topic}"
        # Before the SDK's own retries: a host that does not resolve fails now, named, with what to set.
        check_endpoint(event.endpoint, event.project)
        shared_client = self.sls_client(event.endpoint, creds)
        stats = RetryStats()
        deadline = self.deadline(timeout_seconds)
        # Every SLS request of the invocation, the SDK's own retries included, ends by its deadline.
        client = DeadlineLogClient(shared_client, deadline, max_pull_bytes=MAX_PAGE_BYTES)
        key = CheckpointKey(event.project, event.logstore, event.shard, scope)
        args = (event, client, self.projector(settings))
        store = self.checkpoint_store(shared_client)
        if isinstance(store, SlsConsumerGroupStore):
            store = store.bound(client, sls_retrying(deadline, stats, retriable=is_transient_sls_error))
        rest = dict(store=store, key=key, topic=settings.kafka.topic,
                    dlq_topic=settings.kafka.dlq_topic, settings_source=settings.source,
                    retrying=sls_retrying(deadline, stats), stats=stats, deadline=deadline)
        pipeline: RangePipeline
        if settings.kafka.delivery_mode == "exactly-once":
            pipeline = ExactlyOncePipeline(*args, sink=self.transactional_sink(key),
                                           max_records=settings.kafka.transaction_max_records, **rest)
        else:
            pipeline = RangePipeline(*args, sink=self.sink, **rest)
        try:
            summary = pipeline.run()
        except ProcessorError as exc:
            if not _clean(exc, creds.secrets()):
                # SLS may echo the signed request (STS token included): mask it and cut the quoting causes off.
                raise _masked(exc, creds.secrets()) from None
            raise
        log.info("shard %d: %d log groups, %d records, %d produced, %d dead-lettered in %.2fs (cursor %s)",
                 summary.shard, summary.log_groups, summary.records_read, summary.produced, summary.dead_lettered,
                 summary.duration_seconds, summary.cursor_reached)
        return summary
