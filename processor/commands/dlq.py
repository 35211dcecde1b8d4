"""`sls-kafka dlq show` and `sls-kafka dlq replay`: read the dead letters, and deliver them once the cause is fixed."""

from __future__ import annotations

import argparse
import heapq
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer

from common.errors import ConfigError
from processor.commands.common import graceful_stop, int_in_range, parse_parameter, parse_position, parse_shards
from processor.commands.dlq_records import DeadLetter, consumer_config, partitions_of, read_to_end
from processor.commands.dlq_replay import DEFAULT_BATCH, replay
from processor.config import Settings

CONFIG_NOTE = ("Kafka settings and the dead-letter topic (KAFKA_DLQ_TOPIC, default <KAFKA_TOPIC>.dlq) come from the "
               "environment, as for the function.")


def register(sub: Any) -> None:
    p = sub.add_parser("dlq", help="show the dead letters, or replay them once their cause is fixed",
                       description="Read the dead-letter topic: `show` lists and counts what was rejected and why, "
                       "`replay` projects each dead letter's original log again with the current configuration "
                       "and delivers the ones that now pass. " + CONFIG_NOTE)
    commands = p.add_subparsers(dest="dlq_command", metavar="show|replay", required=True)
    show = commands.add_parser("show", help="list dead letters with their reason, source and original, and count "
                               "them by reason", description="List the dead letters (reason, source shard and "
                               "cursor, original log), oldest first, then their counts by reason. "
                               "Filters combine. " + CONFIG_NOTE)
    show.add_argument("--reason", metavar="TEXT", help="only reasons containing TEXT (case-insensitive)")
    show.add_argument("--shard", type=parse_shards, metavar="IDS", help="only from these source shards, e.g. 0,3")
    show.add_argument("--since", metavar="TIME", help="only rejected at or after TIME (unix seconds or ISO-8601 "
                      "with offset)")
    show.add_argument("--until", metavar="TIME", help="only rejected before TIME")
    show.add_argument("--limit", type=int_in_range(0, 10**9), default=20, metavar="N",
                      help="list at most N of them (default 20; the counts cover every match)")
    show.add_argument("--json", action="store_true", help="one JSON document: the counts and the dead letters")
    show.add_argument("--dlq-topic", metavar="TOPIC", help="the topic to read [default: the configured one]")
    show.set_defaults(func=run_show)
    rep = commands.add_parser(
        "replay", help="project the dead letters again with the current configuration and deliver the good ones",
        description="Read the dead-letter topic from where the last replay stopped (a Kafka consumer group, "
        "default sls-kafka-dlq-replay-<topic>), project each dead letter's original log with the current "
        "configuration and produce the records that pass to the topic, with the original's sls.* headers. "
        "What fails again is dead-lettered anew with its new reason (and `replay_of` naming the old record). "
        "The group's offsets move only once Kafka confirmed what a batch produced; with "
        "DELIVERY_MODE=exactly-once they are committed in the same transaction, so a replay that is stopped and "
        "run again delivers nothing twice. Dead letters for another topic are left to that topic's replay. "
        "Records Kafka refused are produced again as they were. " + CONFIG_NOTE)
    rep.add_argument("--parameter", metavar="JSON", help="a trigger's functionParameter (topic, fields, ...), "
                     "for dead letters of a trigger that overrides them")
    rep.add_argument("--group", metavar="NAME", help="the consumer group keeping the replay's progress")
    rep.add_argument("--batch", type=int_in_range(1, 100_000), default=DEFAULT_BATCH, metavar="N",
                     help=f"dead letters per confirmed batch (and transaction) (default {DEFAULT_BATCH})")
    rep.add_argument("--limit", type=int_in_range(1, 10**9), metavar="N",
                     help="stop after N dead letters (run again to go on)")
    rep.set_defaults(func=run_replay)


def _when(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    position = parse_position(text, flag, allow_cursor=False)
    if position.kind != "time":
        msg = f"{flag} {text!r}: give a time (unix seconds or ISO-8601 with offset)"
        raise ConfigError(msg)
    return float(position.value)


def _iso(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_show(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    topic = args.dlq_topic or settings.kafka.dlq_topic
    since, until = _when(args.since, "--since"), _when(args.until, "--until")
    wanted = (args.reason or "").lower()

    def matches(letter: DeadLetter) -> bool:
        at = letter.rejected_at
        return (wanted in letter.reason.lower()
                and (args.shard is None or letter.source.get("shard") in args.shard)
                and (since is None or (at is not None and at >= since))
                and (until is None or (at is not None and at < until)))

    counts: Counter[str] = Counter()

    def counted(letters: Iterable[DeadLetter]) -> Iterator[DeadLetter]:
        for letter in letters:
            if matches(letter):
                counts[letter.reason] += 1
                yield letter

    # A group of its own: nothing is committed, and no replay's progress is touched.
    consumer = Consumer(consumer_config(settings.kafka, f"sls-kafka-dlq-show-{uuid.uuid4().hex}"))
    try:
        starts = dict.fromkeys(partitions_of(consumer, topic, "dead-letter topic"), OFFSET_BEGINNING)
        # Partitions are read side by side: the oldest, in time order, read as a history. Only the ones shown are
        # kept, so a large topic is counted in constant memory.
        shown = heapq.nsmallest(args.limit, counted(read_to_end(consumer, topic, starts)),
                                key=lambda letter: (letter.rejected_at or 0.0, letter.partition, letter.offset))
    finally:
        consumer.close()
    total = sum(counts.values())
    if args.json:
        doc = {"topic": topic, "total": total, "by_reason": dict(counts.most_common()),
               "dead_letters": [letter.summary() for letter in shown]}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    out = [f"== {topic}: {total} dead letter(s)" + (" matching" if _filtered(args) else "")]
    for letter in shown:
        src = letter.source
        out.append(f"{_iso(letter.rejected_at)}  partition {letter.partition} offset {letter.offset}  shard "
                   f"{src.get('shard', '-')} cursor {src.get('cursor', '-')} group {src.get('group', '-')}: "
                   f"{letter.reason}")
        original = letter.doc.get("original", letter.doc.get("original_text"))
        if original is not None:
            out.append("   original: " + (original if isinstance(original, str) else orjson.dumps(original).decode()))
    if total > len(shown):
        out.append(f"   ... {total - len(shown)} more (--limit)")
    out.append("== by reason:")
    out += [f"{n:>7}  {reason}" for reason, n in counts.most_common()]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _filtered(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.reason, args.shard, args.since, args.until))


def run_replay(args: argparse.Namespace) -> int:
    parameter = parse_parameter(args.parameter)
    settings = Settings.from_env().with_parameter(parameter)
    stop = threading.Event()
    with graceful_stop(stop, "the batch in flight"):
        totals = replay(settings, args.group, args.batch, args.limit, stop)
    print(totals.line(), flush=True)
    return 0
