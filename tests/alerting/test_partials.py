"""Partials merged across shards and attempts, and the aggregates they carry (pure logic)."""

import random

import orjson
import pytest

from alerting.aggregates import RELATIVE_ACCURACY, Agg, from_columns, merged, quantile, to_columns, value_of
from alerting.partials import PartialIndex, decode


def partial(shard, begin, end, emitted_ms, counts, rule="r"):
    """A partials-topic record as the observer writes it: `counts` maps pane start to the records in it."""
    doc = {"version": 2, "project": "p", "logstore": "l", "shard": shard, "begin": begin, "end": end, "cursor": "c",
           "emitted_ms": emitted_ms,
           "rules": {rule: {"panes": {str(pane): {"g": [""], "n": [n]} for pane, n in counts.items()},
                            "samples": []}}}
    return decode(f"p/l/{shard}/{begin}".encode(), orjson.dumps(doc))


def total(index, pane=0):
    return index.panes("r")[pane][""].n


def test_shards_add_up_and_the_same_page_again_replaces_itself():
    index = PartialIndex()
    index.add(partial(0, 0, 10, 1, {0: 5}))
    index.add(partial(1, 0, 10, 1, {0: 7}))
    index.add(partial(0, 0, 10, 2, {0: 5}))  # shard 0's range retried: the same page, the same key
    assert total(index) == 12


def test_a_retry_that_paged_differently_replaces_the_pages_it_overlaps():
    index = PartialIndex()
    # First attempt: pages [0, 4) and [4, 12); it failed after checkpointing 4, having emitted both.
    index.add(partial(0, 0, 4, 1, {0: 4}))
    index.add(partial(0, 4, 12, 2, {0: 8}))
    # The retry resumes at 4 and pages [4, 6), [6, 10), [10, 12).
    index.add(partial(0, 4, 6, 3, {0: 2}))
    assert total(index) == 6  # [6, 12) of the first attempt is gone until the retry delivers it again
    index.add(partial(0, 6, 10, 4, {0: 4}))
    index.add(partial(0, 10, 12, 5, {0: 2}))
    assert total(index) == 12


def test_an_older_partial_read_after_a_newer_overlapping_one_is_ignored():
    index = PartialIndex()
    # Different keys may sit in different partitions, so their order of reading is not their order of writing.
    index.add(partial(0, 4, 6, 3, {0: 2}))
    assert index.add(partial(0, 2, 12, 2, {0: 10}))[0].emitted_ms == 2
    assert total(index) == 2


def test_prune_forgets_partials_only_when_every_pane_is_old():
    index = PartialIndex()
    index.add(partial(0, 0, 4, 1, {0: 1, 600: 1}))
    index.add(partial(1, 0, 4, 1, {0: 1}))
    index.prune(300)
    assert [p.stream[2] for p in index.partials()] == [0]


def test_version_1_partials_written_before_an_upgrade_still_count():
    doc = {"version": 1, "project": "p", "logstore": "l", "shard": 0, "begin": 0, "end": 4, "cursor": "c",
           "emitted_ms": 1, "rules": {"r": {"panes": {"60": {"7": {"n": 3, "v": 2, "s": 250.0, "lo": 120.0,
                                                                       "hi": 130.0}}}, "samples": []}}}
    index = PartialIndex()
    index.add(decode(b"p/l/0/0", orjson.dumps(doc)))
    agg = index.panes("r")[60]["7"]
    assert (agg.n, agg.values, value_of(agg, "avg"), value_of(agg, "max")) == (3, 2, 125.0, 130.0)


def test_a_record_that_is_not_a_partial_is_named():
    with pytest.raises(ValueError, match="partial record b'k' is not one the alert observer writes"):
        decode(b"k", b'{"rules": 1}')


def test_p95_of_merged_histograms_is_within_the_sketch_accuracy():
    rng = random.Random(7)
    values = [rng.uniform(0, 200) for _ in range(10_000)]
    parts = [Agg() for _ in range(4)]
    for i, v in enumerate(values):
        parts[i % 4].add_number(v)
        parts[i % 4].add_bucket(v)
    agg = merged(from_columns(orjson.loads(orjson.dumps(to_columns({"": p}))))[""] for p in parts)
    exact = sorted(values)[int(0.95 * len(values)) - 1]
    assert value_of(agg, "percentile", 95) == pytest.approx(exact, rel=RELATIVE_ACCURACY * 1.01)
    assert value_of(agg, "avg") == pytest.approx(sum(values) / len(values))
    assert (value_of(agg, "min"), value_of(agg, "max")) == (min(values), max(values))
    assert quantile({}, 0.5) is None


def test_distinct_merges_sets_and_no_values_means_no_value():
    a, b = Agg(), Agg()
    for car in (1, 2, 3):
        a.add_distinct(car)
    for car in (3, 4):
        b.add_distinct(car)
    assert value_of(merged([a, b]), "distinct") == 4
    assert value_of(Agg(), "avg") is None
    assert value_of(Agg(), "count") == 0
