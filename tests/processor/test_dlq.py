"""`sls-kafka dlq show` and `dlq replay` end to end: a wrong projection dead-letters records, `show` counts them
by reason, the configuration is fixed, and `replay` delivers each exactly once, also when stopped and run again."""

from __future__ import annotations

import re
import signal
from collections import Counter

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.kafka_helpers import read_all
from tests.pipeline_support import chunks, json_contents, put_groups
from tests.processor.commands_support import stack_fixture, stop  # noqa: F401  (the `stack` fixture)
from tests.waiting import wait_for

WRONG = "speed:int,carID:int,seq:int"  # upstream sends some speeds as 12.5: an int projection rejects them
FIXED = "speed:number,carID:int,seq:int"
MISFIT = "field 'speed' is 12.5, expected an int"
POISON = "field 'speed' is 'fast', expected an int"
POISON_NOW = "field 'speed' is 'fast', expected a number"


def write_logs(stack) -> list[bytes]:
    """60 records, every 6th with a float speed, two poison records; returns what a fixed projection delivers."""
    records = [{"speed": 12.5 if i % 6 == 0 else i, "carID": 1000 + i % 7, "seq": i} for i in range(60)]
    poison = [{"speed": "fast", "carID": 1, "seq": 900}, {"speed": "fast", "carID": 2, "seq": 901}]
    groups = [*chunks(records[:30], 15), records[30:45] + poison[:1], records[45:] + poison[1:]]
    put_groups(stack.client, stack.project, stack.logstore, (json_contents(g) for g in groups))
    return [orjson.dumps(r) for r in records]


def dead_letters(stack) -> list[dict]:
    return [orjson.loads(r.value) for r in read_all(stack.bootstrap, stack.dlq)]


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
def test_wrong_projection_dead_letters_then_replay_delivers_each_once_across_stops(stack, mode):
    stack.extra.update(DELIVERY_MODE=mode, PROJECTION_FIELDS=WRONG)
    expected = write_logs(stack)
    ran = stack.cli("run", "--once", "--start", "begin")
    assert ran.returncode == 0, ran.stderr
    assert "50 delivered, 12 dead-lettered" in ran.stdout

    shown = stack.cli("dlq", "show", "--limit", "10")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == f"== {stack.dlq}: 12 dead letter(s)"
    assert shown.stdout.endswith(f"== by reason:\n     10  {MISFIT}\n      2  {POISON}\n")
    assert "   ... 2 more (--limit)" in shown.stdout
    listed = [line for line in shown.stdout.splitlines() if " offset " in line]
    assert len(listed) == 10
    assert all(" shard " in line and " cursor M" in line and line.endswith((MISFIT, POISON)) for line in listed)
    assert '   original: {"__time__":' in shown.stdout
    poison = orjson.loads(stack.cli("dlq", "show", "--reason", "FAST", "--json").stdout)
    assert poison["total"] == 2
    assert poison["by_reason"] == {POISON: 2}
    assert {orjson.loads(d["original"]["contents"][0][1])["seq"] for d in poison["dead_letters"]} == {900, 901}
    by_shard = [orjson.loads(stack.cli("dlq", "show", "--shard", str(s), "--json").stdout)["total"] for s in (0, 1)]
    assert sum(by_shard) == 12
    assert all(by_shard)
    future = orjson.loads(stack.cli("dlq", "show", "--since", "2999-01-01T00:00:00Z", "--json").stdout)
    assert future["total"] == 0

    stack.extra["PROJECTION_FIELDS"] = FIXED
    # Stopped after 5 dead letters, then run again: together they deliver each misfit once. A poison record
    # fails again with its new reason and is dead-lettered anew, after the end the run started with: the next
    # replay reads it.
    first = replayed(stack, "--batch", "3", "--limit", "5")
    assert first["read"] == 5
    second = replayed(stack, "--batch", "3")
    assert second["read"] == 7 + first["again"]
    assert first["delivered"] + second["delivered"] == 10
    assert stack.delivered() == Counter(expected)
    again = [d for d in dead_letters(stack) if "replay_of" in d]
    assert len(again) == first["again"] + second["again"] >= 2
    assert {d["reason"] for d in again} == {POISON_NOW}
    assert Counter(d["replay_of"]["reason"] for d in again) == {POISON: 2, POISON_NOW: len(again) - 2}
    third = replayed(stack)
    assert third == {"read": second["again"], "delivered": 0, "again": second["again"]}
    assert stack.delivered() == Counter(expected)


def replayed(stack, *args: str) -> dict[str, int]:
    result = stack.cli("dlq", "replay", *args)
    assert result.returncode == 0, result.stderr
    m = re.fullmatch(rf"sls-kafka dlq replay: (\d+) dead letter\(s\) read: (\d+) delivered to {stack.topic}, "
                     r"(\d+) dead-lettered again, 0 for another topic \(left to its replay\), 0 cannot be replayed "
                     r"\(original cut or not a dead letter\)\n", result.stdout)
    assert m, result.stdout
    return dict(zip(("read", "delivered", "again"), map(int, m.groups()), strict=True))


def replayed_offset(consumer: Consumer, stack) -> int:
    """Where the replay's consumer group stands on the (one-partition) dead-letter topic."""
    [tp] = consumer.committed([TopicPartition(stack.dlq, 0)], timeout=10)
    return max(tp.offset, 0)


@pytest.mark.parametrize(("mode", "sig"), [("at-least-once", signal.SIGTERM), ("exactly-once", signal.SIGKILL)])
def test_replay_stopped_mid_run_then_run_again_delivers_each_once(stack, mode, sig):
    stack.extra.update(DELIVERY_MODE=mode, PROJECTION_FIELDS=WRONG)
    records = [{"speed": 12.5 if i % 2 else i, "carID": 1000 + i % 7, "seq": i} for i in range(6000)]
    put_groups(stack.client, stack.project, stack.logstore, (json_contents(g) for g in chunks(records, 50)))
    ran = stack.cli("run", "--once", "--start", "begin")
    assert "3000 delivered, 3000 dead-lettered" in ran.stdout, ran.stderr
    stack.extra["PROJECTION_FIELDS"] = FIXED

    # read_uncommitted: the group's offsets as of its last committed transaction, without waiting for the one a
    # SIGKILL left open to time out (read_committed asks for stable offsets, and gets none until then).
    group = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"sls-kafka-dlq-replay-{stack.topic}",
                      "isolation.level": "read_uncommitted"})
    try:
        proc = stack.popen("dlq", "replay", "--batch", "2")
        wait_for(lambda: replayed_offset(group, stack) > 0, 60, "the replay's first confirmed batch")
        stop(proc, sig)
        out, err = proc.communicate(timeout=60)
        stopped_at = replayed_offset(group, stack)
    finally:
        group.close()
    assert 0 < stopped_at < 3000, (stopped_at, out, err)  # it was stopped mid-run
    if sig == signal.SIGTERM:
        assert proc.returncode == 0, err
        assert out.startswith(f"sls-kafka dlq replay: {stopped_at} dead letter(s) read: {stopped_at} delivered")
    again = replayed(stack)
    assert again["read"] == 3000 - stopped_at
    assert stack.delivered() == Counter(orjson.dumps(r) for r in records)


def test_replay_after_one_killed_inside_its_transaction_goes_on_at_once(stack):
    """A killed exactly-once replay leaves a transaction open with the group's offsets in it; until it is aborted,
    the group's committed offsets cannot be read (unstable). The next replay must abort it first, not fail."""
    stack.extra.update(DELIVERY_MODE="exactly-once", PROJECTION_FIELDS=WRONG)
    records = [{"speed": 12.5 if i % 2 else i, "carID": 1000 + i % 7, "seq": i} for i in range(200)]
    put_groups(stack.client, stack.project, stack.logstore, (json_contents(g) for g in chunks(records, 50)))
    assert "100 delivered, 100 dead-lettered" in stack.cli("run", "--once", "--start", "begin").stdout
    stack.extra["PROJECTION_FIELDS"] = FIXED
    # What a SIGKILLed replay leaves behind: its transaction, holding the group's next offset, never ended.
    group = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"sls-kafka-dlq-replay-{stack.topic}"})
    killed = Producer({"bootstrap.servers": stack.bootstrap, "transactional.id": f"sls-kafka/dlq-replay/{stack.topic}",
                       "transaction.timeout.ms": 600_000})
    try:
        killed.init_transactions(30)
        killed.begin_transaction()
        killed.send_offsets_to_transaction([TopicPartition(stack.dlq, 0, 40)], group.consumer_group_metadata(), 30)

        again = replayed(stack)
    finally:
        group.close()
    assert again == {"read": 100, "delivered": 100, "again": 0}  # the open transaction's offsets never counted
    assert stack.delivered() == Counter(orjson.dumps(r) for r in records)


def test_replay_names_what_it_cannot_replay_and_leaves_other_topics_dead_letters(stack):
    cut = {"reason": "too big", "source": {"shard": 0}, "target_topic": stack.topic, "rejected_at": 1.0,
           "original_text": "{\"contents\": [[\"content\", \"x", "original_truncated": {"size": 300000, "kept": 20}}
    other = {"reason": "required field 'carID' is missing", "source": {"shard": 0}, "target_topic": "elsewhere",
             "rejected_at": 2.0, "original": {"__time__": 1, "contents": [["content", '{"speed": 1, "carID": 2}']]}}
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    for value in (b"not a dead letter", orjson.dumps(cut), orjson.dumps(other)):
        producer.produce(stack.dlq, value)
    assert producer.flush(30) == 0
    result = stack.cli("dlq", "replay")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"sls-kafka dlq replay: 3 dead letter(s) read: 0 delivered to {stack.topic}, 0 "
                             "dead-lettered again, 1 for another topic (left to its replay), 2 cannot be replayed "
                             "(original cut or not a dead letter)\n")
    assert "dead letter at partition 0 offset 0 cannot be replayed: it holds no original log" in result.stderr
    assert "offset 1 cannot be replayed: its original was cut to fit the record" in result.stderr
    shown = orjson.loads(stack.cli("dlq", "show", "--json").stdout)
    assert shown["total"] == 3
    assert shown["by_reason"]["not a dead-letter record: b'not a dead letter'"] == 1


def test_replay_produces_a_record_kafka_refused_again_as_it_was_with_its_key_and_source(stack):
    refused = {"reason": f"Kafka refused the record for topic {stack.topic}: Broker: Message size too large",
               "source": {"shard": 1, "cursor": "MTc=", "group": 3}, "target_topic": stack.topic, "rejected_at": 1.0,
               "original_text": '{"speed":1,"carID":2,"seq":7}'}
    headers = [("sls.shard", b"1"), ("sls.cursor", b"MTc="), ("sls.group", b"3")]
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    producer.produce(stack.dlq, orjson.dumps(refused), b"2", headers=headers)
    assert producer.flush(30) == 0
    assert replayed(stack) == {"read": 1, "delivered": 1, "again": 0}
    [record] = read_all(stack.bootstrap, stack.topic)
    assert (record.key, record.value) == (b"2", b'{"speed":1,"carID":2,"seq":7}')
    assert {k: record.headers[k] for k in ("sls.shard", "sls.cursor", "sls.group")} == dict(headers)
