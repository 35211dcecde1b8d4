"""SLS cursors: one encoding, decoded with the error of whoever reads the cursor (pure logic)."""

from __future__ import annotations

import pytest

from checkpoints.base import position
from common.cursors import cursor_from_position, cursor_position
from common.errors import CheckpointError


def test_a_position_round_trips_and_matches_the_cursors_sls_hands_out():
    assert cursor_from_position(100) == "MTAw"  # what SLS answers for the log group at position 100
    assert [cursor_position(cursor_from_position(p)) for p in (0, 1, 99, 10**15)] == [0, 1, 99, 10**15]
    assert cursor_position("MTAw") == 100


def test_a_cursor_without_padding_decodes():
    assert cursor_position(cursor_from_position(12).rstrip("=")) == 12


@pytest.mark.parametrize(("decode", "error", "name"), [
    (cursor_position, ValueError, "cursor"),
    (position, CheckpointError, "checkpoint cursor"),
])
def test_not_a_cursor_raises_the_readers_error_naming_the_value(decode, error, name):
    with pytest.raises(error, match=rf"^{name} 'not a cursor!' is not an SLS cursor \(base64 of a decimal number\)$"):
        decode("not a cursor!")
    with pytest.raises(error, match="'YWJj' is not an SLS cursor"):  # base64 of "abc"
        decode("YWJj")
