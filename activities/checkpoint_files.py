"""Checkpoint files on the worker's disk: finding, fingerprinting and naming them.

A checkpoint is a top-level entry (file or directory) of the job's checkpoint directory,
announced by the trainer or found by a scan.

Hashing is the one expensive thing here (a checkpoint can be many GiB), so every file read
by ``fingerprint`` is counted in ``HASHED``: what the fingerprint cache saves can be checked.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
from collections import Counter
from collections.abc import Generator
from contextlib import closing
from pathlib import Path
from typing import Any

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
    outlive the activity that asked. Never follows a symbolic link (a container can plant
    ``ckpt-1 -> /etc`` for the worker to read): links are skipped, and every directory and
    file is opened relative to its parent's descriptor with ``O_NOFOLLOW``, so swapping an
    entry for a link mid-walk cannot lead outside either.

    Raises:
        OSError: ``path`` is missing, a link, or neither a regular file nor a directory.
        HashingStopped: ``stop`` was set before every byte was read.
    """
    digest = hashlib.sha256()
    size = 0
    mode = os.lstat(path).st_mode
    if stat.S_ISDIR(mode):
        top = os.open(path, _DIR_FLAGS)
        try:
            with closing(_files_under(top, "")) as files:
                for relative, handle in files:
                    digest.update(relative.encode() + b"\0")
                    HASHED.add(path / relative)
                    size += _digest_into(digest, handle, stop, str(path / relative))
        finally:
            os.close(top)
    else:
        single = _open_regular(str(path), None)
        if single is None:
            raise OSError(f"{path} is not a regular file")
        HASHED.add(path)
        size = _digest_into(digest, single, stop, str(path))
    return size, digest.hexdigest()


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO the trainer left must not hang the worker; fstat then refuses it.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _open_regular(name: str, dir_fd: int | None) -> int | None:
    try:
        handle = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None  # a link (ELOOP), removed meanwhile, unreadable
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        return None
    return handle


def _files_under(dir_fd: int, prefix: str) -> Generator[tuple[str, int]]:
    """Regular files below an open directory, in path order, as (relative path, open fd)."""
    with os.scandir(dir_fd) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    for entry in entries:
        if entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False):
            try:
                child = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                yield from _files_under(child, f"{prefix}{entry.name}/")
            finally:
                os.close(child)
        elif (handle := _open_regular(entry.name, dir_fd)) is not None:
            yield f"{prefix}{entry.name}", handle


def _digest_into(digest: Any, handle: int, stop: threading.Event | None, name: str) -> int:
    """Feed a file to the digest and close it; returns its size."""
    size = 0
    with os.fdopen(handle, "rb") as file:
        while block := file.read(1 << 20):
            if stop is not None and stop.is_set():
                raise HashingStopped(name)
            digest.update(block)
            size += len(block)
    return size


def resolve_inside(host_dir: Path, relative: str) -> Path | None:
    """The announced path under ``host_dir``, or None if it leaves it, is or passes through
    a symbolic link, or does not exist."""
    base = host_dir.resolve()
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    candidate = base
    for part in parts:
        candidate = candidate / part
        try:
            if stat.S_ISLNK(os.lstat(candidate).st_mode):
                return None
        except OSError:
            return None
    return candidate


def scan(host_dir: Path) -> list[Path]:
    """Finished-looking top-level entries of a checkpoint directory (files and directories,
    never links)."""
    try:
        listing = list(os.scandir(host_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        host_dir / entry.name
        for entry in listing
        if not entry.name.startswith(".")
        and not entry.name.endswith(_UNFINISHED_SUFFIXES)
        and not entry.is_symlink()
        and (entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False))
    )


def state_of(path: Path) -> tuple[int, int]:
    """Total size and newest modification time of a file or directory tree (cheap: no reads).

    A directory's own times count too: a file added, removed or renamed inside changes them.
    Links are not followed: they count for neither size nor time.
    """
    top = os.lstat(path)
    if not stat.S_ISDIR(top.st_mode):
        return (top.st_size if stat.S_ISREG(top.st_mode) else 0), top.st_mtime_ns
    size, newest = 0, top.st_mtime_ns
    pending = [str(path)]
    while pending:
        try:
            listing = list(os.scandir(pending.pop()))
        except OSError:
            continue  # removed meanwhile
        for entry in listing:
            if entry.is_symlink():
                continue
            info = entry.stat(follow_symlinks=False)
            newest = max(newest, info.st_mtime_ns)
            if stat.S_ISDIR(info.st_mode):
                pending.append(entry.path)
            elif stat.S_ISREG(info.st_mode):
                size += info.st_size
    return size, newest


def step_from_name(name: str) -> int | None:
    match = _STEP_IN_NAME.search(name)
    return int(match.group(1)) if match else None
