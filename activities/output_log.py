"""An attempt's output: split into lines in linear time and kept in a bounded log file.

Every bound is a setting: a line longer than ``max_line`` bytes is split (each piece but the
last marked), and a log past ``max_bytes`` keeps its first half and its newest part, with a
marker between them. A reattached activity resumes the same file: ``<log>.offset`` records
how many bytes of the unit's output the file already holds (up to the last whole line), and
the replayed stream is skipped up to there. The offset belongs to one unit (its ``source``):
the output of the attempt's next unit, after an engine restart, is appended from its start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.settings import LogLimits
from runtimes.trainer_protocol import CHECKPOINT_MARK, PROGRESS_MARK

# Where a log's changes go besides its file: ``ship(offset, data)`` means "the file from
# ``offset`` on is now ``data``" (see store.log_chunks).
Ship = Callable[[int, bytes], Awaitable[None]]

logger = logging.getLogger(__name__)

SPLIT_MARK = b" [line split: longer than %d bytes]"
ELIDED_MARK = b"\n[... output elided: the log keeps its first and newest parts ...]\n"


class LineSplitter:
    """Lines of a byte stream, each seen once: cost linear in the bytes fed."""

    def __init__(self, max_line: int) -> None:
        self._max = max_line
        self._partial = bytearray()

    def feed(self, chunk: bytes) -> list[tuple[bytes, bool]]:
        """``(line, split)`` for every line the chunk completes; ``split`` marks a piece of a
        longer line, cut at ``max_line`` bytes."""
        lines: list[tuple[bytes, bool]] = []
        start = 0
        end = chunk.find(b"\n")
        if end >= 0 and self._partial:
            self._partial += chunk[:end]
            lines += self._pieces(final=True)
            start, end = end + 1, chunk.find(b"\n", end + 1)
        limit = self._max
        while end >= 0:
            if end - start <= limit:
                lines.append((chunk[start:end], False))
            else:
                self._partial += chunk[start:end]
                lines += self._pieces(final=True)
            start = end + 1
            end = chunk.find(b"\n", start)
        if start < len(chunk):
            self._partial += chunk[start:]
            lines += self._pieces(final=False)
        return lines

    @property
    def pending(self) -> int:
        """Bytes of the unfinished line held back."""
        return len(self._partial)

    def rest(self) -> bytes:
        """The unfinished last line (the stream ended without a newline)."""
        rest, self._partial = bytes(self._partial), bytearray()
        return rest

    def _pieces(self, *, final: bool) -> list[tuple[bytes, bool]]:
        pieces: list[tuple[bytes, bool]] = []
        cut = 0
        while len(self._partial) - cut > self._max:
            pieces.append((bytes(self._partial[cut : cut + self._max]), True))
            cut += self._max
        if final:
            pieces.append((bytes(self._partial[cut:]), False))
            cut = len(self._partial)
        if cut:
            del self._partial[:cut]
        return pieces


@dataclass
class _State:
    consumed: int = 0  # bytes of the unit's output the file holds, up to a whole line
    head_end: int | None = None  # file offset where the newest part starts, once elided
    source: str | None = None  # the unit whose output ``consumed`` counts
    shipped: int = 0  # bytes of the file already mirrored to central storage, if shipped


class BoundedLog:
    """The attempt's log file: at most about ``max_bytes``, head and newest output kept."""

    def __init__(self, path: Path, max_bytes: int, max_line: int) -> None:
        self._path = path
        self._offset_path = path.with_name(path.name + ".offset")
        self._max_bytes = max_bytes
        self._max_line = max_line
        self._state = _State()
        self._handle: BinaryIO | None = None
        self._size = 0
        # The lowest offset written since the last shipping: the file from there on changed.
        self._dirty_from = 0

    def open(self, source: str | None = None) -> int:
        """Open the file, resuming it if an earlier activity wrote it; bytes of ``source``'s
        output to skip (none for a unit other than the one the file was following)."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            saved = json.loads(self._offset_path.read_text(encoding="utf-8"))
            self._state = _State(
                int(saved["consumed"]),
                saved.get("head_end"),
                saved.get("source"),
                int(saved.get("shipped", 0)),
            )
            mode = "r+b"
        except (OSError, ValueError, KeyError, TypeError):
            self._state, mode = _State(), "w+b"
        if mode == "r+b" and not self._path.exists():
            self._state, mode = _State(), "w+b"
        # Offsets saved before units had sources were the attempt's one unit's.
        if source is not None and self._state.source not in (None, source):
            self._state.consumed = 0
        self._state.source = source or self._state.source
        handle: BinaryIO = open(self._path, mode)  # type: ignore[assignment]  # noqa: SIM115
        self._handle = handle  # closed by close()
        self._size = handle.seek(0, os.SEEK_END)
        # Whatever the file gained since the last shipping (a note between units, a crash
        # before the offset was saved) is shipped again from there.
        self._dirty_from = min(self._state.shipped, self._size)
        return self._state.consumed

    def write_line(self, line: bytes, *, split: bool, consumed: int) -> None:
        """Append one line; ``consumed`` counts the stream's bytes up to its end."""
        self.write_lines([(line, split)], consumed)

    def write_lines(self, lines: list[tuple[bytes, bool]], consumed: int) -> None:
        """Append lines, in as few writes as the bound allows."""
        mark = SPLIT_MARK % self._max_line
        batch: list[bytes] = []
        pending = 0
        for line, split in lines:
            text = line + mark + b"\n" if split else line + b"\n"
            if self._crosses(self._size + pending + len(text)):
                self._flush(batch)
                batch, pending = [], 0
                self._append(text)
            else:
                batch.append(text)
                pending += len(text)
        self._flush(batch)
        self._state.consumed = consumed

    def write_rest(self, rest: bytes, consumed: int) -> None:
        if rest:
            self._append(rest)
        self._state.consumed = consumed

    def save_offset(self) -> None:
        """Record how far the file got (atomically), for a reattached activity."""
        assert self._handle is not None
        self._handle.flush()
        temporary = self._offset_path.with_name(self._offset_path.name + ".tmp")
        temporary.write_text(
            json.dumps(
                {
                    "consumed": self._state.consumed,
                    "head_end": self._state.head_end,
                    "source": self._state.source,
                    "shipped": self._state.shipped,
                }
            ),
            encoding="utf-8",
        )
        os.replace(temporary, self._offset_path)

    @property
    def path(self) -> Path:
        return self._path

    def changes(self) -> tuple[int, bytes] | None:
        """``(offset, data)``: the file from ``offset`` on, as it now is, if it changed since
        the last :meth:`shipped`; read from the file (at most the log's bound)."""
        assert self._handle is not None
        if self._dirty_from >= self._size and self._state.shipped == self._size:
            return None
        self._handle.flush()
        offset = min(self._dirty_from, self._size)
        with open(self._path, "rb") as reader:
            reader.seek(offset)
            data = reader.read(self._size - offset)
        return offset, data

    def shipped(self, end: int) -> None:
        """The file up to ``end`` is mirrored: only later writes are changes."""
        self._state.shipped = end
        self._dirty_from = end

    def close(self) -> None:
        if self._handle is not None:
            self.save_offset()
            self._handle.close()
            self._handle = None

    def _crosses(self, size: int) -> bool:
        """Whether a file of ``size`` bytes would pass the head's half or the whole bound."""
        if self._state.head_end is None:
            return size > self._max_bytes // 2
        return size > self._max_bytes

    def _flush(self, batch: list[bytes]) -> None:
        if batch:
            assert self._handle is not None
            data = b"".join(batch)
            self._handle.write(data)
            self._size += len(data)

    def _append(self, data: bytes) -> None:
        assert self._handle is not None
        half = self._max_bytes // 2
        if self._state.head_end is None and self._size + len(data) > half:
            # The head is full: the marker follows it, and the newest part after the marker.
            self._handle.write(ELIDED_MARK)
            self._size += len(ELIDED_MARK)
            self._state.head_end = self._size
        elif self._state.head_end is not None and self._size + len(data) > self._max_bytes:
            # The newest part outgrew its half: start it again right after the marker.
            self._handle.truncate(self._state.head_end)
            self._size = self._handle.seek(self._state.head_end)
            self._dirty_from = min(self._dirty_from, self._size)
        self._handle.write(data)
        self._size += len(data)


# Only lines with a protocol mark are handed on (leading blanks allowed, as the parser does).
_MARKS = (PROGRESS_MARK.encode(), CHECKPOINT_MARK.encode())
_OFFSET_SAVE_SECONDS = 1.0
# Waits between the tries of an attempt's last shipment (about 3 s in all, then a warning;
# a reattached activity or a later unit of the attempt ships what is left).
_FINAL_SHIP_PAUSES = (0.2, 0.4, 0.8, 1.6, 0.0)


class OutputCount:
    """Bytes of a unit's output read so far, for whoever waits for the rest to arrive."""

    def __init__(self) -> None:
        self.bytes = 0


async def follow_output(
    stream: AsyncIterator[bytes],
    path: Path,
    limits: LogLimits,
    on_marked: Callable[[bytes], Awaitable[None]] | None = None,
    *,
    source: str | None = None,
    count: OutputCount | None = None,
    ship: Ship | None = None,
) -> None:
    """Copy a unit's output into its bounded log at ``path`` until the stream ends.

    Linear in the output: each byte is split into lines once, and only lines carrying a
    protocol mark reach ``on_marked``. A file an earlier activity wrote is resumed: the
    output of the same ``source`` (the unit's name) it already holds is skipped, so nothing
    is written or reported twice. The stream is closed however this ends, so its reader
    stops with it. ``count``, if given, grows with every byte read.

    With ``ship``, the file's changes are also mirrored to central storage every second and
    at the end (see :func:`_ship`), before the offset that says they were is saved.
    """
    log = BoundedLog(path, limits.max_bytes, limits.max_line)
    skip = await asyncio.to_thread(log.open, source)
    splitter = LineSplitter(limits.max_line)
    loop = asyncio.get_running_loop()
    seen, saved_at = 0, loop.time()
    try:
        async for chunk in stream:
            if count is not None:
                count.bytes += len(chunk)
            if seen < skip:
                already = min(skip - seen, len(chunk))
                seen, chunk = seen + already, chunk[already:]
                if not chunk:
                    continue
            seen += len(chunk)
            lines = splitter.feed(chunk)
            save = loop.time() - saved_at >= _OFFSET_SAVE_SECONDS
            consumed = seen - splitter.pending
            await asyncio.to_thread(_write, log, lines, consumed, save and ship is None)
            if save:
                if ship is not None:
                    await _ship(log, ship)
                    await asyncio.to_thread(log.save_offset)
                saved_at = loop.time()
            if on_marked is not None:
                for line, split in lines:
                    if not split and line[:128].lstrip().startswith(_MARKS):
                        await on_marked(line)
        rest = splitter.rest()
        await asyncio.to_thread(log.write_rest, rest, seen)
        if ship is not None:
            # The last change has no next second to be retried in: a few tries, bounded.
            for pause in _FINAL_SHIP_PAUSES:
                if await _ship(log, ship):
                    break
                await asyncio.sleep(pause)
        if on_marked is not None and rest[:128].lstrip().startswith(_MARKS):
            await on_marked(rest)
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
        await asyncio.to_thread(log.close)


async def _ship(log: BoundedLog, ship: Ship) -> bool:
    """Mirror what changed in the file; False if that failed (the database away): it is
    tried again later, from the same offset, and never stops the output from being read."""
    change = await asyncio.to_thread(log.changes)
    if change is None:
        return True
    offset, data = change
    try:
        await ship(offset, data)
    except Exception as err:
        logger.warning("%s: output not shipped yet, tried again later: %s", log.path, err)
        return False
    log.shipped(offset + len(data))
    return True


def append_note(path: Path, note: str) -> None:
    """A line of the orchestrator's own in an attempt's log, between two units' output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as log:
        log.write(f"--- {note} ---\n".encode())


def _write(log: BoundedLog, lines: list[tuple[bytes, bool]], consumed: int, save: bool) -> None:
    """One thread hop per chunk: its lines, and now and then the offset for a reattach."""
    log.write_lines(lines, consumed)
    if save:
        log.save_offset()
