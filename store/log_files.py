"""Where each training attempt's output is kept, for the logs endpoint and error messages."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

_BLOCK = 64 * 1024
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def run_log_dir(log_dir: Path, job_id: str, run_id: str) -> Path:
    return log_dir / _UNSAFE.sub("_", job_id) / _UNSAFE.sub("_", run_id)


def attempt_log_path(log_dir: Path, job_id: str, run_id: str, attempt: int) -> Path:
    """The file an attempt's output is written to as it runs, kept after the container is gone."""
    return run_log_dir(log_dir, job_id, run_id) / f"attempt-{attempt}.log"


def attempt_logs(log_dir: Path, job_id: str, run_id: str) -> list[tuple[int, Path]]:
    """``(attempt, path)`` of every attempt of a run that left a log, in attempt order."""
    found = []
    for path in run_log_dir(log_dir, job_id, run_id).glob("attempt-*.log"):
        number = path.stem.removeprefix("attempt-")
        if number.isdigit():
            found.append((int(number), path))
    return sorted(found)


# The tail of an attempt's output that travels in Temporal payloads (the attempt's result, the
# run's error message): bounded per line and in total, whatever the trainer printed.
TAIL_MAX_LINES = 20
TAIL_MAX_LINE_CHARS = 1_000
TAIL_MAX_BYTES = 8 * 1024
# Only this much of the file's end is read; a line that starts before it is shown by its end.
TAIL_WINDOW_BYTES = 64 * 1024
_PARTIAL_LINE_MARKER = "[...] "


def read_tail(path: Path) -> str:
    """The last lines of a log file, bounded, read from the file's end (never the whole file).

    At most ``TAIL_MAX_LINES`` lines and ``TAIL_MAX_BYTES`` bytes (UTF-8) in total, the
    oldest lines dropped first; a line longer than ``TAIL_MAX_LINE_CHARS`` keeps its start
    and ends with a marker saying how much was cut. Only the last ``TAIL_WINDOW_BYTES`` are
    read: a line that began before them keeps its last characters behind a leading marker.
    A missing file has an empty tail.
    """
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            # One byte before the window tells whether the window begins at a line's start.
            start = max(0, size - TAIL_WINDOW_BYTES - 1)
            handle.seek(start)
            window = handle.read(size - start)
    except FileNotFoundError:
        return ""
    at_line_start = True
    if start > 0:
        at_line_start, window = window[:1] == b"\n", window[1:]
    pieces = window.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()  # the final newline ends the last line; it does not start another
    # Unless the window begins at a line's start, its first piece is the end of a line.
    partial_first = not at_line_start
    if len(pieces) > TAIL_MAX_LINES:
        pieces, partial_first = pieces[-TAIL_MAX_LINES:], False
    lines = [piece.decode("utf-8", errors="replace").removesuffix("\r") for piece in pieces]
    bounded = [_bounded_line(line) for line in lines]
    if partial_first and lines:
        bounded[0] = _PARTIAL_LINE_MARKER + lines[0][-TAIL_MAX_LINE_CHARS:]
    return _within_bytes(bounded, TAIL_MAX_BYTES)


def _bounded_line(line: str) -> str:
    if len(line) <= TAIL_MAX_LINE_CHARS:
        return line
    cut = len(line) - TAIL_MAX_LINE_CHARS
    return f"{line[:TAIL_MAX_LINE_CHARS]} [... {cut} more characters cut]"


def _within_bytes(lines: list[str], limit: int) -> str:
    """The last lines whose UTF-8 encoding, newline-joined, takes at most ``limit`` bytes."""
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        cost = len(line.encode("utf-8")) + (1 if kept else 0)
        if used + cost > limit:
            if not kept:  # the last line alone is too big: keep what fits of its start
                kept.append(line.encode("utf-8")[:limit].decode("utf-8", errors="ignore"))
            break
        kept.append(line)
        used += cost
    return "\n".join(reversed(kept))


def last_lines_of(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a file, read backwards in blocks (never the whole file)."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            end = handle.seek(0, 2)
            data, position = b"", end
            # One newline more than needed: the first line found may be partial.
            while position > 0 and data.count(b"\n") <= count:
                step = min(_BLOCK, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
    except FileNotFoundError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-count:]


def tail_of_attempts(files: list[tuple[int, Path]], count: int) -> list[str]:
    """The last ``count`` lines of a run's attempts in order, each attempt under a header
    line when there are several (as the whole log shows them)."""
    paths = dict(files)
    return combine_tails(
        [attempt for attempt, _ in files], count, lambda a, n: last_lines_of(paths[a], n)
    )


def combine_tails(
    attempts: list[int], count: int, last_lines: Callable[[int, int], list[str]]
) -> list[str]:
    """The last ``count`` lines over ``attempts`` (in order), from ``last_lines(attempt, n)``,
    each attempt under a header line when there are several."""
    several = len(attempts) > 1
    parts: list[list[str]] = []
    needed = count
    for attempt in reversed(attempts):
        if needed <= 0:
            break
        lines = last_lines(attempt, needed)
        needed -= len(lines)
        if several and needed > 0:
            lines = [f"--- attempt {attempt} ---", *lines]
            needed -= 1
        parts.append(lines)
    return [line for part in reversed(parts) for line in part]
