"""SLS cursors: base64 of the decimal position of a log group in its shard. Encoded and decoded only here.

The SDK relies on the same encoding (`LogClient._get_cursor_as_int`, `get_previous_cursor_time`). We decode to
order cursors of one shard and count log groups between them, and encode only positions between two cursors SLS
handed out (to split a range, or step back one group): never to invent a cursor beyond them.
"""

from __future__ import annotations

import base64
import binascii


def cursor_position(cursor: str, name: str = "cursor", error: type[Exception] = ValueError) -> int:
    """The position behind `cursor`; not a cursor raises `error` naming it as `name`."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        return int(base64.b64decode(padded, validate=True).decode("ascii"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        msg = f"{name} {cursor!r} is not an SLS cursor (base64 of a decimal number)"
        raise error(msg) from None


def cursor_from_position(position: int) -> str:
    """The cursor of the log group at `position`."""
    return base64.b64encode(str(position).encode()).decode()
