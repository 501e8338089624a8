"""Keyset cursors of ``GET /jobs`` and ``GET /jobs/{job_id}/runs``: opaque to clients.

A cursor holds where the last row of a page sits in the list's order (its time and id), so
the next page starts right after it with an index seek however deep it is, and rows
inserted meanwhile (newer, hence before it) neither shift nor repeat what follows.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from core.errors import InvalidInput


def encode_cursor(kind: str, moment: datetime, row_id: str) -> str:
    raw = json.dumps([kind, moment.isoformat(), row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> tuple[datetime, str]:
    """The position a cursor of this ``kind`` holds. Raises InvalidInput (400) otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found, moment, row_id = json.loads(raw)
        if found != kind or not isinstance(row_id, str):
            raise ValueError(kind)
        when = datetime.fromisoformat(moment)
        if when.tzinfo is None:
            raise ValueError(moment)
        return when, row_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as err:
        raise InvalidInput("cursor is not one this list handed out (use next_cursor)") from err
