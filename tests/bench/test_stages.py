"""The stage breakdown times the function's own parts in place, and leaves them as they were."""

from collections import Counter

from aliyun.log import logclient

from bench.stages import _PARTS, timing
from processor.config import ProjectionConfig, parse_fields
from processor.projection import Projector


def test_timing_wraps_every_part_for_the_block_only():
    before = [owner.__dict__[name] for owner, name, _ in _PARTS]
    seconds: Counter[str] = Counter()
    projector = Projector(ProjectionConfig(parse_fields("speed:number"), "auto", "content", ""))

    class Group:
        Logs = ()
        LogTags = ()

    with timing(seconds):
        assert projector.project_group(Group()) == ([], [])
        # A static method stays one: the SDK calls it on the class.
        assert isinstance(logclient.Compressor.__dict__["decompress_response"], staticmethod)

    assert seconds["project"] > 0
    assert [owner.__dict__[name] for owner, name, _ in _PARTS] == before
