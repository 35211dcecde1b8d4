"""The channels the evaluator sends through: the rules file's `channels:` section (email, webhook, DingTalk; see
`alerting.channels`), plus optionally one more from a setting (`ALERT_CHANNEL`, `--channel`), named `default`:

* `file:PATH`: each notification appended to PATH as a JSON line (local runs, tests, a dry evaluator);
* `module:factory`: `factory(env)` returns a `Channel`, for a channel of your own.

A rule sends to the channels it names (`channels: [ops-mail]`), or to every channel when it names none.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path

import orjson

from alerting.notification import Channel, Notification, SendResult
from alerting.outbox import to_json
from alerting.rules import Rule, RuleSet
from common.errors import ConfigError

DEFAULT_CHANNEL = "default"


class FileChannel:
    """Appends each notification as one JSON line; one `write` per line, so concurrent writers do not interleave."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"

    def send(self, notification: Notification) -> SendResult:
        try:
            with self.path.open("ab") as out:
                out.write(orjson.dumps(to_json(notification)) + b"\n")
        except OSError as exc:
            return SendResult(delivered=False, retryable=True, reply=f"cannot append to {self.path}: {exc}")
        return SendResult(delivered=True, retryable=False, reply=f"appended to {self.path}")


def load_channel(spec: str, env: Mapping[str, str] | None = None) -> Channel:
    if spec.startswith("file:") and len(spec) > len("file:"):
        return FileChannel(spec[len("file:"):])
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        msg = f"ALERT_CHANNEL={spec!r}: expected file:PATH or module:factory (e.g. alerting.channels.smtp:from_env)"
        raise ConfigError(msg)
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        msg = f"ALERT_CHANNEL={spec!r}: cannot load the channel factory: {exc}"
        raise ConfigError(msg) from None
    channel = factory(os.environ if env is None else env)
    if not callable(getattr(channel, "send", None)):
        msg = f"ALERT_CHANNEL={spec!r}: the factory returned {channel!r}, which has no send(notification)"
        raise ConfigError(msg)
    return channel


def evaluator_channels(rules: RuleSet, spec: str | None, env: Mapping[str, str] | None = None) -> dict[str, Channel]:
    """Every channel by name, checked now: a wrong setting stops the start naming the channel and the key."""
    channels: dict[str, Channel] = {}
    if rules.channels:
        from alerting.channels import channels_from_config

        base = Path(rules.source).parent if rules.source else None
        channels.update(channels_from_config(rules.channels, base_dir=base, environ=env))
    if spec:
        channels[DEFAULT_CHANNEL] = load_channel(spec, env)
    if not channels:
        msg = (f"{rules.source}: no channel to send through: declare a channels: section in the rules file, or set "
               "ALERT_CHANNEL (--channel)")
        raise ConfigError(msg)
    return channels


def targets(rule: Rule, channels: Mapping[str, Channel]) -> list[str]:
    return list(rule.channels) if rule.channels else sorted(channels)
