"""Checkpoint files on the worker's disk: finding, fingerprinting and naming them.

A checkpoint is a top-level entry (file or directory) of the job's checkpoint directory,
announced by the trainer or found by a scan.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_STEP_IN_NAME = re.compile(r"(\d+)(?!.*\d)")
# Files a trainer is still writing, by the usual conventions.
_UNFINISHED_SUFFIXES = (".tmp", ".partial", ".part", ".lock")


def fingerprint(path: Path) -> tuple[int, str]:
    """Size in bytes and sha256 of a file, or of a directory's files (names included)."""
    digest = hashlib.sha256()
    size = 0
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
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
    """Total size and newest modification time of a file or directory tree (cheap: no reads)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    stats = [file.stat() for file in files]
    return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


def step_from_name(name: str) -> int | None:
    match = _STEP_IN_NAME.search(name)
    return int(match.group(1)) if match else None
