"""The bench's layouts as the function receives them: each takes the projection's column path, and the records
are the ones the bench's verification expects (what the naive loop writes too)."""

import json

import orjson
import pytest
from aliyun.log.proto import LogGroup, LogGroupRaw

from bench.layouts import Shape, shapes
from processor.config import ProjectionConfig, parse_fields
from processor.projection import Projector


def as_received(shape: Shape, count: int, raw: bool) -> tuple[LogGroup | LogGroupRaw, list[dict]]:
    recs = list(shape.logs(count, seed=3))
    parsed = LogGroupRaw() if raw else LogGroup()
    parsed.ParseFromString(shape.group(recs, 1_700_000_000).SerializeToString())
    return parsed, recs


@pytest.mark.parametrize("shape", shapes(), ids=lambda s: s.name)
def test_every_layout_takes_the_column_path_and_gives_the_expected_records(shape):
    projector = Projector(ProjectionConfig(parse_fields(shape.projection_fields), "auto", "content", "carID"))
    for raw in (False, True):
        group, recs = as_received(shape, 50, raw)
        good, _ = projector._columns(group, list(group.Logs))  # raises if the group would go one log at a time
        assert good == projector._one_by_one(group)[0]
        assert [value for _, value in good] == [shape.projected(rec) for rec in recs]
        assert [key for key, _ in good] == [str(rec["carID"]).encode() for rec in recs]


@pytest.mark.parametrize("shape", shapes(), ids=lambda s: s.name)
def test_the_naive_loop_writes_the_same_records(shape):
    group, recs = as_received(shape, 20, False)
    tags = {f"__tag__:{t.Key}": t.Value for t in group.LogTags}
    for log, rec in zip(group.Logs, recs, strict=True):
        item = {**tags, **{c.Key: c.Value if isinstance(c.Value, str) else c.Value.decode("utf-8", "ignore")
                           for c in log.Contents}}
        value = json.dumps(shape.naive_record(item), separators=(",", ":")).encode()
        assert orjson.dumps(orjson.loads(value)) == shape.projected(rec)
