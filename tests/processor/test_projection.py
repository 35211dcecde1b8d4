import base64
import json

import orjson
import pytest
from aliyun.log.proto import LogGroup, LogGroupRaw

from common.errors import DeadLetterToleranceError
from processor.config import ProjectionConfig, parse_fields
from processor.projection import Projector

LESSON = [
    '{"speed":12,"carID":1234,"manufacturer":"BenZ","zone":"China","distance":102,"endAt":"Beijing","startAt":"Shanghai"}',
    '{"speed":24,"carID":3512,"manufacturer":"BenZ","zone":"China","distance":102,"endAt":"Beijing","startAt":"Shanghai"}',
]


def group(*logs, topic="", source="", tags=None, raw=False):
    g = LogGroupRaw() if raw else LogGroup()
    if topic:
        g.Topic = topic
    if source:
        g.Source = source
    for k, v in (tags or {}).items():
        t = g.LogTags.add()
        t.Key, t.Value = k, v
    for contents in logs:
        log = g.Logs.add()
        log.Time = 1_700_000_000
        for k, v in contents.items():
            c = log.Contents.add()
            c.Key, c.Value = k, v
    return g


def projector(fields="speed:number,carID:int", fmt="auto", key="carID"):
    return Projector(ProjectionConfig(parse_fields(fields), fmt, "content", key))


def test_lesson_lines_as_json_in_content_and_as_key_values_give_the_same_records():
    from_json, bad1 = projector().project_group(group(*({"content": line} for line in LESSON)))
    kv_logs = [{k: str(v) for k, v in orjson.loads(line).items()} for line in LESSON]
    from_kv, bad2 = projector().project_group(group(*kv_logs))
    expected = [(b"1234", b'{"speed":12,"carID":1234}'), (b"3512", b'{"speed":24,"carID":3512}')]
    assert from_json == expected
    assert from_kv == expected
    assert bad1 == bad2 == []


def test_metadata_tags_renames_and_optional_fields():
    p = projector("carID:str=car,__time__:int=t,__topic__:str,__source__:str,__tag__:__path__:str=path,zone?",
                  key="car")
    good, bad = p.project_group(group({"carID": "7"}, topic="trips", source="10.0.0.1",
                                      tags={"__path__": "/var/log/driving.log"}))
    assert bad == []
    assert orjson.loads(good[0][1]) == {"car": "7", "t": 1_700_000_000, "__topic__": "trips",
                                        "__source__": "10.0.0.1", "path": "/var/log/driving.log"}
    assert good[0][0] == b"7"


POISON = [
    ({"content": "{not json"}, "is not valid JSON"),
    ({"content": "[1,2]"}, "is JSON list, expected an object"),
    ({"content": ""}, "is empty"),
    ({"content": "   "}, "is empty"),
    ({"content": '{"speed":12}'}, "required field 'carID' is missing"),
    ({"content": '{"speed":12,"carID":null}'}, "required field 'carID' is null"),
    ({"content": '{"speed":"fast","carID":1}'}, "field 'speed' is 'fast', expected a number"),
    ({"content": '{"speed":true,"carID":1}'}, "field 'speed' is a boolean"),
    ({"content": '{"speed":12,"carID":1.5}'}, "field 'carID' is 1.5, expected an int"),
    ({"content": '{"speed":12,"carID":{"id":1}}'}, "expected an int"),
    ({"content": '{"speed":"' + "9" * 10 + 'x","carID":1}'}, "expected a number"),
    ({"content": '{"speed":"' + "x" * 2_000_000 + '","carID":1}'}, "expected a number"),
    ({"content": '{"speed":"NaN","carID":1}'}, "expected a number"),
    ({"speed": "12"}, "required field 'carID' is missing"),
    ({"content": '{"speed":"--5","carID":1}'}, "expected a number"),
    ({"content": '{"speed":1,"carID":"' + "9" * 5000 + '"}'}, "expected an int"),
    ({"content": '{"speed":1,"carID":' + "9" * 30 + "}"}, "outside the 64-bit range"),
    ({"speed": "1", "carID": "2" + "0" * 19}, "outside the 64-bit range"),
]


@pytest.mark.parametrize(("contents", "reason"), POISON)
def test_poison_record_is_rejected_with_reason_and_original(contents, reason):
    good, bad = projector().project_group(group({"content": LESSON[0]}, contents, {"content": LESSON[1]}))
    assert [k for k, _ in good] == [b"1234", b"3512"]
    assert len(bad) == 1
    assert reason in bad[0].reason
    assert bad[0].log["contents"] == [[k, v] for k, v in contents.items()]


def test_non_utf8_value_is_rejected_and_kept_as_base64():
    g = group({"content": LESSON[0].encode()}, {"content": b'{"speed":1,"carID":\xff}'}, raw=True)
    good, bad = projector().project_group(g)
    assert [k for k, _ in good] == [b"1234"]
    assert "not valid UTF-8" in bad[0].reason
    original = base64.b64decode(bad[0].log["contents"][0][1]["base64"])
    assert original == b'{"speed":1,"carID":\xff}'


def test_json_format_requires_the_json_field():
    good, bad = projector(fmt="json").project_group(group({"speed": "1", "carID": "2"}))
    assert good == []
    assert "holding the JSON document is missing" in bad[0].reason


def test_kv_format_does_not_parse_content():
    good, bad = projector(fields="content:str", fmt="kv", key="").project_group(group({"content": "{x"}))
    assert good == [(None, b'{"content":"{x"}')]
    assert bad == []


def test_number_keeps_int_and_float_and_parses_strings():
    good, _ = projector("a:number,b:number,c:float,d:bool", key="").project_group(
        group({"a": "12", "b": "2.5", "c": "3", "d": "true"}))
    assert orjson.loads(good[0][1]) == {"a": 12, "b": 2.5, "c": 3.0, "d": True}


def upb_group(*logs, topic="", source="", tags=None, corrupt=None):
    """A LogGroup as the SDK hands it over: a string that is not UTF-8 comes back as `bytes` (upb does not check).

    `corrupt` maps placeholder bytes to bad bytes of the same length, swapped into the serialized page, so keys,
    topic, source and tags (strings even in LogGroupRaw) can carry them too.
    """
    data = group(*logs, topic=topic, source=source, tags=tags, raw=True).SerializeToString()
    for placeholder, bad in (corrupt or {}).items():
        assert len(placeholder) == len(bad)
        assert placeholder in data
        data = data.replace(placeholder, bad)
    parsed = LogGroup()
    parsed.ParseFromString(data)
    return parsed


def both(*logs):
    """The same logs as the SDK gives them with upb (LogGroup with bytes values) and as a LogGroupRaw."""
    return upb_group(*logs), group(*logs, raw=True)


def test_upb_gives_bytes_for_a_value_that_is_not_utf8():
    g = upb_group({"driver": b"Jos\xe9"})
    assert g.Logs[0].Contents[0].Value == b"Jos\xe9"


@pytest.mark.parametrize("fields", ["speed:number,carID:int,driver", "speed:number,carID:int,driver:str"])
@pytest.mark.parametrize("fmt", ["auto", "kv"])
def test_non_utf8_value_of_a_projected_kv_field_is_rejected_naming_the_field(fields, fmt):
    logs = [{"speed": b"1", "carID": b"7", "driver": b"Ana"}, {"speed": b"2", "carID": b"8", "driver": b"Jos\xe9"}]
    for g in both(*logs):
        good, bad = projector(fields, fmt).project_group(g)
        assert good == [(b"7", b'{"speed":1,"carID":7,"driver":"Ana"}')]
        assert [r.reason for r in bad] == ["field 'driver' is not valid UTF-8 (unexpected end of data at byte 3)"]
        assert bad[0].log["contents"][2] == ["driver", {"base64": base64.b64encode(b"Jos\xe9").decode()}]


def test_non_utf8_in_a_field_not_projected_does_not_reject_the_log():
    logs = [{"speed": b"1", "carID": b"7", "manufacturer": b"Citro\xebn", "keyX": b"x"}]
    for g in (upb_group(*logs, corrupt={b"keyX": b"key\xff"}), group(*logs, raw=True)):
        assert projector().project_group(g) == ([(b"7", b'{"speed":1,"carID":7}')], [])


def test_non_utf8_json_content_is_rejected_as_not_utf8():
    for g in both({"content": b'{"speed":1,"carID":7,"driver":"Jos\xe9"}'}):
        good, bad = projector("speed:number,carID:int,driver").project_group(g)
        assert good == []
        assert [r.reason for r in bad] == ["content field 'content' is not valid UTF-8 (invalid continuation byte "
                                           "at byte 34)"]


def test_non_utf8_key_field_value_is_rejected_not_turned_into_a_repr_key():
    for g in both({"speed": b"1", "carID": b"\xff7"}):
        good, bad = projector("speed:number,carID", key="carID").project_group(g)
        assert good == []
        assert bad[0].reason.startswith("field 'carID' is not valid UTF-8")


@pytest.mark.parametrize(("meta", "output"), [("__topic__", "tripX"), ("__source__", "10.0.0.X"),
                                              ("__tag__:driver", "JosX")])
def test_projected_metadata_that_is_not_utf8_is_rejected(meta, output):
    fields = f"speed:number,carID:int,{meta}=m"
    log = {"speed": b"1", "carID": b"7"}
    values = dict(topic="tripX", source="10.0.0.X", tags={"driver": "JosX"})
    for g in (upb_group(log, **values), group(log, raw=True, **values)):
        assert projector(fields).project_group(g) == ([(b"7", b'{"speed":1,"carID":7,"m":"%s"}' % output.encode())], [])
    g = upb_group(log, **values, corrupt={output.encode(): output.encode()[:-1] + b"\xe9"})
    good, bad = projector(fields).project_group(g)
    assert good == []
    assert bad[0].reason.startswith(f"metadata {meta!r} is not valid UTF-8")


def tolerant(tolerance, fields="speed:number,carID:int", fmt="auto"):
    return Projector(ProjectionConfig(parse_fields(fields), fmt, "content", "carID", tolerance))


def page_of(p, *groups):
    return [p.project_group(group(*logs)) for logs in groups]


def test_page_rejected_for_one_reason_is_refused_with_what_to_check():
    p = tolerant("page", "sped:number,carID:int")
    page = page_of(p, [{"content": LESSON[0]}], [{"content": LESSON[1]}, {"speed": "1", "carID": "2"}])
    with pytest.raises(DeadLetterToleranceError) as refused:
        p.check_page(page, "the page at cursor MTA= of shard 3")
    assert str(refused.value) == (
        "every record lacks required field 'sped': check PROJECTION_FIELDS (all 3 records of the page at cursor "
        "MTA= of shard 3 were rejected for this one reason, so none was produced or dead-lettered and the "
        "checkpoint stays before them; DEAD_LETTER_TOLERANCE=all would dead-letter such a page)")
    with pytest.raises(DeadLetterToleranceError, match=r"^every record was rejected because content field 'content' "
                                                       r"is empty: check PROJECTION_FIELDS, LOG_FORMAT and "):
        p.check_page(page_of(p, [{"content": ""}, {"content": " "}]), "p")


@pytest.mark.parametrize("logs", [
    [{"content": '{"speed": 1}'}],  # one record is no pattern
    [{"content": '{"speed": 1}'}, {"content": LESSON[0]}],  # a good record in the page
    [{"content": '{"speed": 1}'}, {"content": "{x"}],  # two reasons
])
def test_page_tolerance_lets_poison_through(logs):
    p = tolerant("page")
    page = page_of(p, logs)
    p.check_page(page, "p")
    assert sum(len(bad) for _, bad in page) >= 1


def test_tolerance_none_refuses_any_reject_and_all_none():
    p = tolerant("none")
    p.check_page(page_of(p, [{"content": LESSON[0]}]), "p")
    with pytest.raises(DeadLetterToleranceError, match=r"^1 record\(s\) of p cannot be projected, the first because "
                                                       "required field 'carID' is missing; DEAD_LETTER_TOLERANCE=none"):
        p.check_page(page_of(p, [{"content": LESSON[0]}, {"content": '{"speed": 1}'}]), "p")
    everything_bad = tolerant("all", "sped:number,carID:int")
    everything_bad.check_page(page_of(everything_bad, [{"content": LESSON[0]}, {"content": LESSON[1]}]), "p")


# The column path (`Projector._columns`) must give exactly what projecting one log at a time gives, whatever the
# group holds: these groups mix the shapes that send a group one log at a time with the ones that do not.
VALUES = ["12", "-7", "007", " 5 ", "2.5", "1e3", "1,2", "", "x", "true", "False", "9" * 18, "9" * 19, "9" * 20,
          "-" + "9" * 20, "NaN", "inf", "١٢", "1_000", b"12", b"Jos\xe9", b"Ana", 'a","b', "x\\", '"', "é\u2028",
          "1.0", "-0", "1E400", "1e3", "18446744073709551615", "18446744073709551616", "-9223372036854775809",
          "0.12345678901234567", " 7", "\t7\n", "\x0c7", "5.", "[5]", "5]", "1,", "0x1F"]
JSON_VALUES = [12, -7, 2.5, True, None, "12", " 3 ", "x", 2**64, 2**63, -(2**63) - 1, 1e308, [1], {"a": 1}, "1_0",
               'a","b', "x\\", '"', "é\u2028", 1e-7, -0.0, False, [], {}]


def good_value(rng, key, typed):
    value = rng.choice([True, False]) if key == "zone" else rng.choice([rng.randint(-5, 200)] * 9 + [2.5])
    return value if typed else str(value).lower()


def random_group(rng, width, fmt_json):
    tags = {"__path__": rng.choice(["/var/log/a.log", "/var/log/é"])} if rng.random() < 0.5 else {}
    g = group(topic=rng.choice(["", "trips"]), source=rng.choice(["", "10.0.0.1"]), tags=tags, raw=True)
    keys = ["speed", "carID", "zone"] + [f"f{i}" for i in range(width - 3)]
    for _ in range(rng.randint(1, 6)):
        log = g.Logs.add()
        log.Time = 1_700_000_000
        if rng.random() < 0.3:
            log.Time_ns = 5
        if fmt_json and rng.random() < 0.9:
            doc = {k: rng.choice(JSON_VALUES) if rng.random() < 0.05 else good_value(rng, k, True) for k in keys
                   if rng.random() < 0.99}
            c = log.Contents.add()
            c.Key, c.Value = "content", json.dumps(doc).encode() if rng.random() < 0.9 else b"{x"
            continue
        order = keys[:] if rng.random() < 0.8 else rng.sample(keys, len(keys) - rng.randint(0, 1))
        if rng.random() < 0.05:
            order.append(rng.choice(keys))  # a repeated key: the last one counts
        for k in order:
            v = rng.choice(VALUES) if rng.random() < 0.05 else good_value(rng, k, False)
            c = log.Contents.add()
            c.Key, c.Value = k, v if isinstance(v, bytes) else v.encode()
    return upb_group_from(g) if rng.random() < 0.5 else g


def upb_group_from(raw_group):
    parsed = LogGroup()
    parsed.ParseFromString(raw_group.SerializeToString())
    return parsed


@pytest.mark.parametrize("fields", ["speed:number,carID:int", "speed:float,carID:str,zone?", "carID:any,zone:bool?",
                                    "speed:int?,carID,__time__:int=t,__topic__?,__source__:str?,__tag__:__path__?",
                                    "carID:int,__time_ns__:int?=ns"])
@pytest.mark.parametrize("fmt", ["auto", "kv", "json"])
def test_the_column_path_gives_what_one_log_at_a_time_gives(fields, fmt):
    import random

    rng = random.Random(f"{fields}{fmt}")
    p = projector(fields, fmt)
    by_column = 0
    for _ in range(400):
        g = random_group(rng, rng.choice([3, 7, 25]), rng.random() < 0.5)
        try:
            good, columns = p._columns(g, list(g.Logs))
            by_column += 1
        except Exception:  # any signal means "one log at a time", compared below all the same
            pass
        else:  # the columns the alert observer reads hold each record's values
            docs = [orjson.loads(value) for _, value in good]
            assert columns == {name: [doc.get(name) for doc in docs] for name in columns}
        assert p.project_group(g) == p._one_by_one(g)
    assert by_column >= 20  # the comparison covered the column path, not only the fallback


def test_a_repeated_key_takes_its_last_value_in_every_layout():
    logs = [{"speed": "1", "carID": "7"}, {"speed": "2", "carID": "8"}]
    g = group(*logs)
    g.Logs[1].Contents.add(Key="carID", Value="9")
    assert projector().project_group(g) == ([(b"7", b'{"speed":1,"carID":7}'), (b"9", b'{"speed":2,"carID":9}')], [])


def test_a_content_field_among_key_values_is_parsed_as_json_in_auto_mode():
    logs = [{"speed": "1", "carID": "7"}, {"speed": "2", "carID": "8", "content": '{"speed":3,"carID":9}'}]
    assert projector().project_group(group(*logs)) == ([(b"7", b'{"speed":1,"carID":7}'),
                                                        (b"9", b'{"speed":3,"carID":9}')], [])
