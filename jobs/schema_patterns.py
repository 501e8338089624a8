"""Regular expressions that let the OpenAPI schema say exactly what the API accepts.

They are written for JSON Schema (ECMA-262 regexes, lookaheads included) and used in the
schema only; validation stays with the field validators, whose messages name the problem.
Where a rule cannot be a regex at all (``start < end``, a name already taken), the schema
says so in words and the API answers 400 or 409.
"""

from __future__ import annotations

# Characters that rewrite a terminal or hide or reorder what a reader sees: C0 and C1
# controls, DEL, bidirectional overrides and isolates, zero-width characters, line and
# paragraph separators and the byte-order mark.
UNSAFE_CLASS = "\\x00-\\x1f\\x7f-\\x9f\\u061c\\u200b-\\u200f\\u2028-\\u202e\\u2066-\\u2069\\ufeff"
# As above, but newline and tab are a multi-line text's own.
UNSAFE_IN_TEXT_CLASS = UNSAFE_CLASS.replace("\\x00-\\x1f", "\\x00-\\x08\\x0b-\\x1f")

SAFE_TEXT = f"^[^{UNSAFE_IN_TEXT_CLASS}]*$"
# Something besides whitespace, nothing unsafe.
SAFE_NAME = f"^[^{UNSAFE_CLASS}]*[^\\s{UNSAFE_CLASS}][^{UNSAFE_CLASS}]*$"
SAFE_TOKEN = f"^[^\\s{UNSAFE_CLASS}]+$"
NO_NUL = "^[^\\x00]*$"


def _fill_by_nines(number: int, count: int) -> int:
    return int(str(number)[:-count] + "9" * count)


def _fill_by_zeros(number: int, count: int) -> int:
    return number - number % int(10**count)


def _stops(low: int, high: int) -> list[int]:
    stops = {high}
    nines = 1
    while low <= (stop := _fill_by_nines(low, nines)) < high:
        stops.add(stop)
        nines += 1
    zeros = 1
    while low < (stop := _fill_by_zeros(high + 1, zeros) - 1) <= high:
        stops.add(stop)
        zeros += 1
    return sorted(stops)


def _piece(start: int, stop: int) -> str:
    pattern, any_digits = "", 0
    for first, last in zip(str(start), str(stop), strict=True):
        if first == last:
            pattern += first
        elif first != "0" or last != "9":
            pattern += f"[{first}-{last}]"
        else:
            any_digits += 1
    if any_digits:
        pattern += "[0-9]" + (f"{{{any_digits}}}" if any_digits > 1 else "")
    return pattern


def integer_range(low: int, high: int) -> str:
    """A regex group matching the decimal integers ``low``..``high`` (no leading zeros)."""
    pieces, start = [], low
    for stop in _stops(low, high):
        pieces.append(_piece(start, stop))
        start = stop + 1
    return "(?:" + "|".join(pieces) + ")"


def memory_pattern(low: int, high: int) -> str:
    """Docker memory limits from ``low`` to ``high`` bytes: ``8g``, ``512mb``, ``6291456``."""
    forms = []
    for unit, size in (("", 1), ("[kK]", 1024), ("[mM]", 1024**2), ("[gG]", 1024**3)):
        smallest, largest = -(-low // size), high // size
        if smallest <= largest:
            forms.append(f"{integer_range(smallest, largest)}{unit}[bB]?")
    return "^(?:" + "|".join(forms) + ")$"


def _cron_field(value: str, step: str, allow_step: bool) -> str:
    # A step runs from 1 to the field's span (high - low): */12 is refused for months.
    item = f"(?:{value})"
    single = f"(?:\\*/(?:{step})|{item}(?:,{item})*)" if allow_step else f"{item}(?:,{item})*"
    return f"(?:\\*|{single})"


_MINUTE = _cron_field("0?[0-9]|[1-5][0-9]", "0?[1-9]|[1-5][0-9]", True)
_HOUR = _cron_field("0?[0-9]|1[0-9]|2[0-3]", "0?[1-9]|1[0-9]|2[0-3]", True)
_MONTH = _cron_field("0?[1-9]|1[0-2]", "0?[1-9]|1[01]", True)
_DAY_OF_MONTH = "(?:0?[1-9]|[12][0-9]|3[01])(?:,(?:0?[1-9]|[12][0-9]|3[01]))*"
_DAY_OF_WEEK = "[0-7](?:,[0-7])*"
# The common subset of classic cron: numbers, lists and */steps, and at most one of
# day-of-month and day-of-week restricted (the API also takes ranges and names).
CRON = (
    "^(?:@(?:yearly|annually|monthly|weekly|daily|midnight|hourly)"
    f"|{_MINUTE} {_HOUR} (?:\\* {_MONTH} (?:\\*|{_DAY_OF_WEEK})|{_DAY_OF_MONTH} {_MONTH} \\*))$"
)

# Absolute, no //, no . or .. part, no ':' or '\\', not in the image's system directories,
# not the parent of every default checkpoint directory.
CHECKPOINT_PATH = (
    "^(?!/(?:bin|boot|dev|etc|lib[^/]*|proc|run|sbin|sys|usr)(?:/|$))(?!/checkpoints/?$)"
    f"(?:/(?!\\.\\.?(?:/|$))[^/:\\\\{UNSAFE_CLASS}]+)+/?$"
)
