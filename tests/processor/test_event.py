import base64

import orjson
import pytest

from common.cursors import cursor_position
from common.errors import EventError
from processor.event import TriggerEvent


def cursor(n: int) -> str:
    return base64.b64encode(str(n).encode()).decode()


EVENT = {
    "parameter": {},
    "source": {
        "endpoint": "http://cn-shanghai-intranet.log.aliyuncs.com",
        "projectName": "log-com",
        "logstoreName": "log-en",
        "shardId": 0,
        "beginCursor": "MTUyOTQ4MDIwOTY1NTk3ODQ2Mw==",
        "endCursor": "MTUyOTQ4MDIwOTY1NTk3ODQ2NA==",
    },
    "jobName": "1f7043ced683de1a4e3d8d70b5a412843d817a39",
    "taskId": "c2691505-38da-4d1b-998a-f1d4bb8c9994",
    "cursorTime": 1529486425,
}


def test_event_official_example_parses_from_bytes():
    ev = TriggerEvent.from_json(orjson.dumps(EVENT))
    assert (ev.project, ev.logstore, ev.shard) == ("log-com", "log-en", 0)
    assert cursor_position(ev.end_cursor) - cursor_position(ev.begin_cursor) == 1
    assert TriggerEvent.from_json(orjson.dumps(ev.to_dict())) == ev


def with_source(**changes):
    doc = orjson.loads(orjson.dumps(EVENT))
    for k, v in changes.items():
        if v is None:
            del doc["source"][k]
        else:
            doc["source"][k] = v
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"not json", "event is not JSON"),
        (b"[1,2]", "must be a JSON object"),
        (b"{}", "'source' is missing"),
        (b'{"source": "x"}', "'source' must be an object"),
        (with_source(shardId=None), "source.shardId' is missing"),
        (with_source(shardId="0"), "source.shardId' must be a non-negative integer"),
        (with_source(shardId=-1), "non-negative integer"),
        (with_source(shardId=True), "non-negative integer"),
        (with_source(projectName=None), "source.projectName' is missing"),
        (with_source(logstoreName=""), "source.logstoreName' must be a non-empty string"),
        (with_source(beginCursor="%%%"), "source.beginCursor '%%%' is not an SLS cursor"),
        (with_source(endCursor=12), "source.endCursor' must be a non-empty string"),
        (with_source(beginCursor=cursor(10), endCursor=cursor(5)), "range is reversed"),
        (orjson.dumps({**EVENT, "parameter": [1]}), "'parameter' must be an object"),
        (orjson.dumps({**EVENT, "cursorTime": "yesterday"}), "'cursorTime' must be unix seconds"),
    ],
)
def test_event_malformed_raises_event_error_naming_the_field(raw, needle):
    with pytest.raises(EventError) as info:
        TriggerEvent.from_json(raw)
    assert needle in str(info.value)


def test_event_empty_range_is_valid():
    ev = TriggerEvent.from_json(with_source(beginCursor=cursor(7), endCursor=cursor(7)))
    assert ev.begin_cursor == ev.end_cursor
