"""Per-instance state built once (config, producer, stores) and the per-invocation run over one range.

Only what `initialize` needs is imported with this module: the SLS SDK (and requests under it), the delivery
loop, the checkpoint stores other than the file store and the transactional parts are imported where first
used, so an instance's start does not pay for them, and one that is never configured for them never does.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from checkpoints.base import CheckpointKey
from checkpoints.file import FileCheckpointStore
from common.deadline import Deadline
from common.errors import ConfigError, ProcessorError
from processor.config import Settings, budget_margin
from processor.credentials import Credentials
from processor.kafka.producer import KafkaSink

if TYPE_CHECKING:
    from aliyun.log import LogClient

    from checkpoints.base import CheckpointReader, CheckpointStore
    from checkpoints.kafka_txn import KafkaCheckpointStore
    from checkpoints.sls_consumer_group import SlsConsumerGroupStore
    from processor.delivery.loop import CommitStrategy
    from processor.delivery.observers import BatchObserver
    from processor.delivery.summary import Summary
    from processor.event import TriggerEvent
    from processor.kafka.tracking import Sink
    from processor.kafka.transactional import TransactionalKafkaSink
    from processor.projection import Projector
    from processor.sls.retry import RetryStats

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


def alert_observer(settings: Settings) -> BatchObserver:
    """The alert rules' observer; a rules file that is wrong, or reads a field not projected, fails start-up."""
    from alerting.observer import AlertObserver
    from alerting.rules import load_rules

    return AlertObserver(load_rules(settings.alerts.rules_file or ""), settings.alerts.partials_topic,
                         settings.projection.fields)


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
        # Per-batch observers every run of this instance feeds (see processor.delivery.observers).
        self.observers: list[BatchObserver] = []
        if settings.alerts.rules_file is not None:
            self.observers.append(alert_observer(settings))
        self._busy = threading.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Runtime:
        return cls(Settings.from_env(env))

    def sls_client(self, endpoint: str, creds: Credentials) -> LogClient:
        """One client per endpoint and credentials; a rotated STS token gets a fresh client."""
        ident = (endpoint, creds.access_key_id, creds.access_key_secret, creds.security_token or "")
        if self._client is None or self._client[0] != ident:
            from aliyun.log import LogClient

            client = LogClient(endpoint, creds.access_key_id, creds.access_key_secret, creds.security_token)
            # The SDK waits up to 120 s per request; an invocation's requests are bounded by its deadline too
            # (`DeadlineLogClient`), this caps each one where no deadline applies.
            client.timeout = SLS_REQUEST_TIMEOUT_SECONDS
            self._client = (ident, client)
        return self._client[1]

    def checkpoint_reader(self, client: LogClient) -> CheckpointReader:
        """Where this configuration's checkpoints are read (`lag`, backfill's progress check)."""
        if self.settings.checkpoint.store == "kafka":
            return self.kafka_checkpoints()
        return self.checkpoint_store(client)

    def checkpoint_store(self, client: LogClient, invocation_client: LogClient | None = None,
                         deadline: Deadline | None = None, stats: RetryStats | None = None) -> CheckpointStore:
        """The file or SLS store (the Kafka store is written by the transactional strategy only).

        With an invocation's client, deadline and stats, SLS calls end by its deadline and transient failures
        are retried within it.
        """
        if self.settings.checkpoint.store == "sls":
            from checkpoints.sls_consumer_group import SlsConsumerGroupStore
            from processor.sls.retry import is_transient_sls_error, sls_retrying

            # Kept per client so the consumer group is created once, not per invocation.
            if self._sls_store is None or self._sls_store.client is not client:
                self._sls_store = SlsConsumerGroupStore(client, self.settings.checkpoint.consumer_group)
            if invocation_client is None or deadline is None or stats is None:
                return self._sls_store
            return self._sls_store.bound(invocation_client,
                                         sls_retrying(deadline, stats, retriable=is_transient_sls_error))
        return self._file_store

    def kafka_checkpoints(self) -> KafkaCheckpointStore:
        if self._kafka_store is None:
            from checkpoints.kafka_txn import KafkaCheckpointStore

            self._kafka_store = KafkaCheckpointStore(self.settings.kafka.producer_config(),
                                                     self.settings.kafka.checkpoint_topic)
        return self._kafka_store

    def transactional_sink(self, key: CheckpointKey) -> TransactionalKafkaSink:
        """One producer per transactional id (project/logstore/shard[/scope]), a few kept warm per instance."""
        tid = f"sls-kafka/{key}"
        sink = self._txn_sinks.pop(tid, None)
        if sink is None:
            from processor.kafka.transactional import TransactionalKafkaSink

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
            from processor.projection import Projector

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
                scope: str = "", sink: Sink | None = None, store: CheckpointStore | None = None) -> Summary:
        """Deliver one range. A `sink` and `store` given replace Kafka and the checkpoints (a dry run: at-least-once
        through the same loop, e.g. a `PrintingSink` and a `NullCheckpointStore`)."""
        from checkpoints.null import NullCheckpointStore
        from processor.delivery.at_least_once import AtLeastOnce
        from processor.delivery.loop import RangeLoop, RangeRun
        from processor.sls.endpoint import check_endpoint
        from processor.sls.retry import DeadlineLogClient, RetryStats, sls_retrying
        from processor.sls.source import MAX_PAGE_BYTES

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
        kafka = settings.kafka
        run = RangeRun(event, client, self.projector(settings), sink or self.sink, key, kafka.topic,
                       kafka.dlq_topic, settings.source, sls_retrying(deadline, stats), stats, deadline, self.observers)
        loop = RangeLoop(run)
        strategy: CommitStrategy
        if sink is not None:
            strategy = AtLeastOnce(loop, store or NullCheckpointStore())
        elif kafka.delivery_mode == "exactly-once":
            from processor.delivery.transactional import Transactional

            run.sink = txn_sink = self.transactional_sink(key)
            strategy = Transactional(loop, txn_sink, self.kafka_checkpoints(), kafka.transaction_max_records)
        else:
            strategy = AtLeastOnce(loop, self.checkpoint_store(shared_client, client, deadline, stats))
        if not self._busy.acquire(blocking=False):
            msg = ("this instance is already running an invocation: run the function with instanceConcurrency: 1 "
                   "(the instance's producer serves one invocation's deadline and is purged when it fails)")
            raise ConfigError(msg)
        try:
            summary = loop.execute(strategy)
        except ProcessorError as exc:
            if not _clean(exc, creds.secrets()):
                # SLS may echo the signed request (STS token included): mask it and cut the quoting causes off.
                raise _masked(exc, creds.secrets()) from None
            raise
        finally:
            self._busy.release()
        log.info("shard %d: %d log groups, %d records, %d produced, %d dead-lettered in %.2fs (cursor %s)",
                 summary.shard, summary.log_groups, summary.records_read, summary.produced, summary.dead_lettered,
                 summary.duration_seconds, summary.cursor_reached)
        return summary
