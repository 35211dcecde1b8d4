"""What a checkpoint proves and how stores combine them: pure logic, plus the file store's forward-only save."""

from __future__ import annotations

import base64

import pytest

from checkpoints.base import Checkpoint, CheckpointKey, merge
from checkpoints.file import FileCheckpointStore
from processor.delivery.resume import resume_point
from processor.event import TriggerEvent


def c(n: int) -> str:
    return base64.b64encode(str(n).encode()).decode()


def cp(cursor: int, origin: int | None = None) -> Checkpoint:
    return Checkpoint(c(cursor), None if origin is None else c(origin))


def event(begin: int, end: int) -> TriggerEvent:
    return TriggerEvent("http://sls", "p", "l", 0, c(begin), c(end))


@pytest.mark.parametrize(("current", "new", "kept"), [
    (None, cp(5, 5), cp(5, 5)),
    (cp(50, 0), cp(40, 0), cp(50, 0)),      # an older cursor never overwrites a newer one
    (cp(40, 0), cp(50, 0), cp(50, 0)),
    (cp(40, 10), cp(60, 50), cp(40, 10)),   # a hole between the stretches: no jump over it
    (cp(40, 10), cp(60, 40), cp(60, 10)),   # touching stretches join
    (cp(60, 40), cp(30, 10), cp(60, 40)),   # wholly before and apart: nothing joins
    (cp(60, 40), cp(40, 10), cp(60, 10)),   # an earlier stretch reaching the stored one extends its origin
    (cp(60), cp(40, 10), cp(60)),           # no origin (consumer group): cursor only, forward only
    (cp(40), cp(60, 50), cp(40)),           # a hole, even where only the cursor is kept
    (cp(40), cp(60, 30), cp(60)),
])
def test_merge_only_grows_and_never_jumps(current, new, kept):
    assert merge(current, new) == kept


@pytest.mark.parametrize(("saved", "rng", "state", "start"), [
    (None, (10, 20), "first", 10),
    (cp(20, 0), (10, 20), "done", 20),
    (cp(30, 10), (10, 20), "done", 30),
    (cp(15, 0), (10, 20), "resume", 15),
    (cp(5, 0), (10, 20), "catch-up", 5),
    (cp(10, 0), (10, 20), "begin", 10),
    # The stretch starts after this range (another range was recorded first): nothing proves it delivered.
    (cp(30, 15), (10, 20), "unproven", 10),
    (cp(30), (10, 20), "done", 30),
])
def test_resume_point(saved, rng, state, start):
    assert resume_point(event(*rng), saved) == (state, c(start))


def test_file_store_keeps_the_newer_checkpoint(tmp_path):
    store = FileCheckpointStore(tmp_path)
    key = CheckpointKey("p", "l", 0)
    assert store.load(key) is None
    assert store.save(key, cp(10, 0)) == cp(10, 0)
    assert store.save(key, cp(30, 0)) == cp(30, 0)
    assert store.save(key, cp(20, 0)) == cp(30, 0)
    assert FileCheckpointStore(tmp_path).load(key) == cp(30, 0)
