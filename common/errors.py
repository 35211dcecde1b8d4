"""One exception hierarchy; every message names what is wrong and, where it helps, what to do."""

from __future__ import annotations


class ProcessorError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(ProcessorError, ValueError):
    """A configuration variable (or CLI flag) is missing or has a bad value."""


class DeadLetterToleranceError(ConfigError):
    """More records were rejected than DEAD_LETTER_TOLERANCE allows (e.g. a whole page for one reason: a field
    name that fits no record). Retrying the same data fails the same way, so it is not retried; nothing of the
    page is produced and no checkpoint passes it, so fixing the configuration delivers it."""


class EventError(ProcessorError, ValueError):
    """The trigger event is not what an SLS trigger sends."""


class SourceError(ProcessorError):
    """Reading from SLS failed in a way retrying will not fix (auth, missing project, bad parameter)."""


class CursorExpiredError(SourceError):
    """The cursor points at data SLS no longer keeps (retention) and the policy says to stop."""


class SinkError(ProcessorError):
    """Kafka did not confirm every record; the batch was not checkpointed and must be retried.

    `code` is the Kafka error code (`confluent_kafka.KafkaError`) when Kafka gave one.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class FatalSinkError(SinkError):
    """The producer cannot go on (fenced, authentication, invalid state); retrying the batch will not help."""


class BudgetExceededError(ProcessorError, TimeoutError):
    """The invocation's time budget ran out; progress up to the last checkpoint is kept."""


class CheckpointError(ProcessorError):
    """A checkpoint could not be read or written."""
