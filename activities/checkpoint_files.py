"""Checkpoint files on the worker's disk: finding, fingerprinting and naming them.

A checkpoint is a top-level entry (file or directory) of the job's checkpoint directory,
announced by the trainer or found by a scan.

Hashing is the one expensive thing here (a checkpoint can be many GiB), so every file read
by ``fingerprint`` is counted in ``HASHED``: what the fingerprint cache saves can be checked.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from pathlib import Path

_STEP_IN_NAME = re.compile(r"(\d+)(?!.*\d)")
# Files a trainer is still writing, by the usual conventions.
_UNFINISHED_SUFFIXES = (".tmp", ".partial", ".part", ".lock")


class HashCounter:
    """How many times each file was read to be hashed, by absolute path (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, file: Path) -> None:
        with self._lock:
            self._counts[str(file.resolve())] += 1

    def of(self, file: Path) -> int:
        """Times ``file`` was hashed since the process started."""
        with self._lock:
            return self._counts[str(file.resolve())]

    def total(self) -> int:
        with self._lock:
            return self._counts.total()


HASHED = HashCounter()


class HashingStopped(Exception):
    """``fingerprint`` was told to stop before it read everything."""


def fingerprint(path: Path, stop: threading.Event | None = None) -> tuple[int, str]:
    """Size in bytes and sha256 of a file, or of a directory's files (names included).

    Reads every byte: call it in a thread, and only when ``state_of`` changed. Setting
    ``stop`` ends it at the next block it reads (``HashingStopped``), so the thread does not
    outlive the activity that asked.
    """
    digest = hashlib.sha256()
    size = 0
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        HASHED.add(file)
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                if stop is not None and stop.is_set():
                    raise HashingStopped(str(file))
                digest.update(block)
                size += len(block)
    return size, digest.hexdigest()


def resolve_inside(host_dir: Path, relative: str) -> Path | None:
    """The announced path under ``host_dir``, or None if it leaves it or does not exist."""
    candidate = (host_dir / relative.lstrip("/")).resolve()
    if not candidate.is_relative_to(host_dir.resolve()) or candidate == host_dir.resolve():
        return None
    return candidate if candidate.exists() else None


def scan(host_dir: Path) -> list[Path]:
    """Finished-looking top-level entries of a checkpoint directory."""
    if not host_dir.is_dir():
        return []
    return sorted(
        entry
        for entry in host_dir.iterdir()
        if not entry.name.startswith(".") and not entry.name.endswith(_UNFINISHED_SUFFIXES)
    )


def state_of(path: Path) -> tuple[int, int]:
    """Total size and newest modification time of a file or directory tree (cheap: no reads).

    A directory's own times count too: a file added, removed or renamed inside changes them.
    """
    if path.is_file():
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
    size, newest = 0, path.stat().st_mtime_ns
    for entry in path.rglob("*"):
        if entry.is_file():
            stat = entry.stat()
            size += stat.st_size
            newest = max(newest, stat.st_mtime_ns)
        elif entry.is_dir():
            newest = max(newest, entry.stat().st_mtime_ns)
    return size, newest


def step_from_name(name: str) -> int | None:
    match = _STEP_IN_NAME.search(name)
    return int(match.group(1)) if match else None
