"""Strict per field: JSON's own types, where pydantic's lax mode would coerce.

Lax mode reads ``"yes"`` as true, ``0`` as 1970-01-01 and ``"3"`` as 3; strict mode for a
whole model would refuse the ISO strings JSON carries for dates. These validators keep each
field to what its JSON Schema type says.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BeforeValidator


def _json_integer(value: object) -> object:
    # Strict per field: "3" and true are not numbers; 3.0 is 3, as JSON Schema reads it.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


JSON_INT = BeforeValidator(_json_integer)


def _iso_text(value: object) -> object:
    # Strict per field: a number is not a date (lax mode reads 0 as 1970-01-01); strict mode
    # for the whole model would refuse the ISO strings JSON carries.
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 date-time string such as 2025-01-01T00:00:00Z")
    return value


def _true_or_false(value: object) -> object:
    # A query string is text: "true" and "false" only, not "yes", "on" or "1".
    if isinstance(value, str) and value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value == "true" if isinstance(value, str) else value


IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_text)]
QueryBool = Annotated[bool, BeforeValidator(_true_or_false)]
