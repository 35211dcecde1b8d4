"""A store that keeps nothing: for runs that must not leave progress behind (dry runs, benchmarks)."""

from __future__ import annotations

from checkpoints.base import Checkpoint, CheckpointKey


class NullCheckpointStore:
    """Every range starts at its begin and nothing is saved."""

    def load(self, key: CheckpointKey) -> Checkpoint | None:
        return None

    def save(self, key: CheckpointKey, checkpoint: Checkpoint) -> Checkpoint:
        return checkpoint
