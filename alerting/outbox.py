"""The outbox: every notification to send is an entry in the state topic, claimed before it is sent.

An entry goes pending → claimed (committed before the channel is called) → sent, or back to pending with a
backoff when the channel failed. A claim younger than the lease is left alone (another evaluator is sending it);
an older one means its evaluator died between claim and record, and it is sent again with the same id, which
channels turn into the same Message-ID. That crash is the only way a notification goes out twice.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from alerting.notification import Channel, GroupValue, Notification, Sample, SendResult, Transition

log = logging.getLogger(__name__)

PENDING, CLAIMED, SENT = "pending", "claimed", "sent"
FIRST_BACKOFF_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 600.0


def to_json(n: Notification) -> dict[str, Any]:
    doc = asdict(n)
    doc["transition"] = n.transition.value
    doc["samples"] = [{**asdict(s), "record": s.record.decode("utf-8", "replace")} for s in n.samples]
    doc["labels"] = dict(n.labels)
    return doc


def from_json(doc: dict[str, Any]) -> Notification:
    return Notification(
        **{**doc, "transition": Transition(doc["transition"]),
           "groups": tuple(GroupValue(**g) for g in doc["groups"]),
           "history": tuple((int(s), float(v)) for s, v in doc["history"]),
           "samples": tuple(Sample(**{**s, "record": s["record"].encode()}) for s in doc["samples"])})


def new_entry(n: Notification, now: float) -> dict[str, Any]:
    return {"notification": to_json(n), "status": PENDING, "attempts": 0, "created": now, "next_at": now,
            "claimed_at": 0.0, "reply": ""}


def due(entry: dict[str, Any], now: float, lease: float) -> bool:
    if entry["status"] == PENDING:
        return entry["next_at"] <= now
    return entry["status"] == CLAIMED and now - entry["claimed_at"] >= lease


def claimed(entry: dict[str, Any], now: float) -> dict[str, Any]:
    return {**entry, "status": CLAIMED, "claimed_at": now, "attempts": entry["attempts"] + 1}


def send(channel: Channel, n: Notification) -> SendResult:
    """The channel's answer; a channel that raises despite the contract is an attempt that failed."""
    try:
        return channel.send(n)
    except Exception as exc:  # the evaluator must keep the entry and retry, whatever the channel did
        log.exception("channel %s raised sending %s", getattr(channel, "name", "?"), n.id)
        return SendResult(delivered=False, retryable=True, reply=f"the channel raised {exc!r}")


def settled(entry: dict[str, Any], result: SendResult, now: float) -> dict[str, Any]:
    """After an attempt: sent, or pending again after an exponential backoff (every failure is retried: an
    alert is never given up)."""
    if result.delivered:
        return {**entry, "status": SENT, "reply": result.reply, "sent_at": now}
    # A refusal the channel calls final (a bad login, an unknown recipient) waits for a fix at the longest backoff.
    backoff = min(FIRST_BACKOFF_SECONDS * 2 ** (entry["attempts"] - 1), MAX_BACKOFF_SECONDS)
    if not result.retryable:
        backoff = MAX_BACKOFF_SECONDS
    return {**entry, "status": PENDING, "reply": result.reply, "next_at": now + backoff}
