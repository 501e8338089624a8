"""The on-disk unit of :class:`runtimes.process.ProcessRuntime`: its supervisor and file helpers.

Run as ``python -I _process_unit.py UNIT_DIR LOCK_FD`` with ``{"command": [...], "env":
{...}}`` as JSON on stdin, this module supervises one trainer: it runs in its own session,
apart from the worker, so the trainer's exit code reaches ``UNIT_DIR/exit_code`` even if the
worker dies. Standard library only: as a script it runs without the project on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

_TAIL_CHUNK = 64 * 1024


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``; readers see the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_int(path: Path) -> int | None:
    """The integer stored in ``path``, or None if it is missing or unreadable."""
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def read_pid(path: Path) -> int | None:
    """Like :func:`read_int`, but never 0 or 1: signalling those hits our own group or init."""
    pid = read_int(path)
    return pid if pid is not None and pid > 1 else None


@contextlib.contextmanager
def locked(unit: Path) -> Iterator[int]:
    """Hold the unit's start lock (an exclusive ``flock``) and yield its file descriptor."""
    fd = os.open(unit / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def start_in_flight(unit: Path) -> bool:
    """Whether someone holds the unit's start lock right now."""
    try:
        fd = os.open(unit / "lock", os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def read_tail(path: Path, lines: int) -> bytes:
    """The last ``lines`` lines of ``path`` (``lines`` > 0), reading only the end of the file."""
    with path.open("rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        data = b""
        # One newline more than asked guarantees that the first kept line is complete.
        while position > 0 and data.count(b"\n") <= lines:
            step = min(_TAIL_CHUNK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    parts = data.split(b"\n")
    trailing = parts[-1] == b""
    if trailing:
        parts.pop()
    return b"\n".join(parts[-lines:]) + (b"\n" if trailing else b"")


def read_output(unit: Path, tail: int | None) -> str:
    """A unit's output, the last ``tail`` lines if given."""
    if not unit.is_dir():
        raise LookupError(unit.name)
    path = unit / "output.log"
    if tail is not None and tail <= 0:
        return ""
    try:
        data = path.read_bytes() if tail is None else read_tail(path, tail)
    except FileNotFoundError:
        return ""
    return data.decode("utf-8", errors="replace")


def executable_problem(command: list[str], path: str) -> str | None:
    """Why ``command`` cannot be executed with this ``PATH``; None if it can."""
    if not command:
        return "the process runtime needs a command: there is no image default"
    executable = command[0]
    if os.sep in executable:
        if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
            return f"{executable!r} does not exist or is not executable"
    elif shutil.which(executable, path=path) is None:
        return f"executable {executable!r} not found on PATH {path}"
    return None


def signal_group(pgid: int, signum: signal.Signals) -> None:
    """Signal a process group that may already be gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def alive(pid: int, marker: str | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, given ``marker``, is still that program."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # It exists but belongs to someone else.
    proc = Path("/proc", str(pid))
    try:
        # A zombie has exited and only waits for its parent to collect it.
        if (proc / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return False
        # A recycled pid belongs to another program.
        if marker is not None and marker.encode() not in (proc / "cmdline").read_bytes():
            return False
    except (OSError, IndexError):
        pass  # No procfs: kill() is all we know.
    return True


def main(argv: list[str]) -> int:
    """Start the trainer, record its pid, wait for it and record its exit code.

    Args:
        argv: ``[program, unit_dir, lock_fd]``.

    Returns:
        The supervisor's own exit status: 0 unless the supervisor itself failed.
    """
    unit, lock_fd = Path(argv[1]), int(argv[2])
    request = json.load(sys.stdin)
    command: list[str] = request["command"]
    write_atomically(unit / "wrapper_pid", f"{os.getpid()}\n")
    with open(unit / "output.log", "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=request["env"],
                # Its own session and process group: stop() signals the trainer and all its
                # children together, and signals meant for the worker never reach it.
                start_new_session=True,
            )
        except OSError as exc:
            log.write(f"cannot start {command[0]!r}: {exc}\n".encode())
            # An exit code without a pid tells ProcessRuntime.start() that the launch failed.
            write_atomically(unit / "exit_code", "127\n")
            return 0
    write_atomically(unit / "pid", f"{child.pid}\n")
    # Releasing the inherited lock tells start() that the pid is on disk.
    os.close(lock_fd)
    returncode = child.wait()
    # Shell and Docker convention: death by signal N is reported as 128 + N.
    code = 128 - returncode if returncode < 0 else returncode
    with contextlib.suppress(FileNotFoundError):  # Removed while it ran: nobody to tell.
        write_atomically(unit / "exit_code", f"{code}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
