"""Per-instance state built once (config, producer, stores) and the per-invocation run over one range."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aliyun.log import LogClient

from checkpoints.base import CheckpointKey, CheckpointStore
from checkpoints.file import FileCheckpointStore
from checkpoints.sls_consumer_group import SlsConsumerGroupStore
from processor.config import Settings
from processor.credentials import Credentials
from processor.deadline import Deadline
from processor.event import TriggerEvent
from processor.pipeline import RangePipeline, Summary
from processor.projection import Projector
from processor.retry import RetryStats, sls_retrying
from processor.sink import KafkaSink

log = logging.getLogger(__name__)


class Runtime:
    """Everything an FC instance (or a poller process) keeps between invocations."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        conf = settings.kafka.producer_config()
        # Undelivered records must not outlive the invocation that produced them.
        conf.setdefault("message.timeout.ms", int(max(settings.runtime.timeout_seconds, 10) * 1000))
        self.sink = KafkaSink(conf)
        self._file_store = FileCheckpointStore(settings.checkpoint.directory)
        self._projectors: dict[tuple[Any, ...], Projector] = {}
        self._client: tuple[tuple[str, ...], LogClient] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Runtime:
        return cls(Settings.from_env(env))

    def sls_client(self, endpoint: str, creds: Credentials) -> LogClient:
        """One client per endpoint and credentials; a rotated STS token gets a fresh client."""
        ident = (endpoint, creds.access_key_id, creds.access_key_secret, creds.security_token or "")
        if self._client is None or self._client[0] != ident:
            self._client = (ident, LogClient(endpoint, creds.access_key_id, creds.access_key_secret,
                                             creds.security_token))
        return self._client[1]

    def checkpoint_store(self, client: LogClient) -> CheckpointStore:
        if self.settings.checkpoint.store == "sls":
            return SlsConsumerGroupStore(client, self.settings.checkpoint.consumer_group)
        return self._file_store

    def projector(self, settings: Settings) -> Projector:
        p = settings.projection
        ident = (p.fields, p.log_format, p.json_field, p.key_field)
        if ident not in self._projectors:
            self._projectors[ident] = Projector(p)
        return self._projectors[ident]

    def deadline(self, timeout_seconds: float | None) -> Deadline:
        timeout = timeout_seconds or self.settings.runtime.timeout_seconds
        margin = min(self.settings.runtime.margin_seconds, timeout * 0.2)
        return Deadline.after(timeout - margin)

    def process(self, event: TriggerEvent, creds: Credentials, timeout_seconds: float | None = None,
                scope: str = "") -> Summary:
        settings = self.settings.with_parameter(event.parameter)
        client = self.sls_client(event.endpoint, creds)
        stats = RetryStats()
        deadline = self.deadline(timeout_seconds)
        pipeline = RangePipeline(
            event, client, self.projector(settings), self.sink, self.checkpoint_store(client),
            CheckpointKey(event.project, event.logstore, event.shard, scope),
            settings.kafka.topic, settings.kafka.dlq_topic, settings.source, sls_retrying(deadline, stats), stats,
            deadline,
        )
        summary = pipeline.run()
        log.info("shard %d: %d log groups, %d records, %d produced, %d dead-lettered in %.2fs (cursor %s)",
                 summary.shard, summary.log_groups, summary.records_read, summary.produced, summary.dead_lettered,
                 summary.duration_seconds, summary.cursor_reached)
        return summary
