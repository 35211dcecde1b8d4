"""Checkpoint stores: where the next cursor to read is kept per project/logstore/shard (and scope)."""

from checkpoints.base import CheckpointKey, CheckpointStore
from checkpoints.file import FileCheckpointStore
from checkpoints.sls_consumer_group import SlsConsumerGroupStore

__all__ = ["CheckpointKey", "CheckpointStore", "FileCheckpointStore", "SlsConsumerGroupStore"]
