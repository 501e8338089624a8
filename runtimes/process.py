"""Run training attempts as process groups directly on the worker host, without a container.

Meant for development and for GPU machines without Docker. Each unit lives in
``state_dir/<name>/``:

* ``labels.json``: the spec's labels, for :meth:`ProcessRuntime.list_units`;
* ``lock``: ``flock``-ed while a start is in flight, so a unit is never launched twice;
* ``wrapper_pid``, ``pid``: the supervising wrapper and the trainer (also its process group);
* ``output.log``: the trainer's stdout and stderr;
* ``exit_code``: written atomically by the wrapper when the trainer ends.

The wrapper (``runtimes/_process_unit.py``) runs in its own session and outlives the
worker, so a restarted worker reattaches and still learns the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from runtimes._process_unit import (
    alive,
    executable_problem,
    locked,
    read_int,
    read_output,
    read_pid,
    signal_group,
    start_in_flight,
    write_atomically,
)
from runtimes.base import (
    LABEL_JOB_ID,
    LABEL_RUN_ID,
    ContainerSpec,
    InvalidSpecError,
    ProgressReport,
    StartResult,
    StreamStop,
    UnitExit,
    stream_in_thread,
)

logger = logging.getLogger(__name__)

_WRAPPER = Path(__file__).with_name("_process_unit.py")
_KEPT_ENV = ("PATH", "HOME", "LANG")
_POLL_SECONDS = 0.1
_KILL_WAIT_SECONDS = 10.0
# What Docker reports for a SIGKILLed container: the closest honest answer when the wrapper
# died and took the real exit status with it.
_LOST_EXIT_CODE = 137


class ProcessRuntime:
    """A :class:`~runtimes.base.ContainerRuntime` that runs ``spec.command`` as a local process.

    ``spec.image`` is ignored. The trainer does not inherit the worker's environment: it gets
    only ``PATH``, ``HOME`` and ``LANG`` (when the worker has them) plus ``spec.env``. Worker
    secrets (database URL, API key) stay out of user code, and a run sees the same environment
    whichever worker starts it, as it would in a container. It runs in the worker's current
    directory, without a shell: ``spec.command`` is an argv list.
    """

    # The trainer runs on the host and sees the host directory itself.
    mounts_checkpoints = False

    def __init__(self, state_dir: Path) -> None:
        """Keep unit directories under ``state_dir`` (created on first start).

        Args:
            state_dir: Directory that survives worker restarts; one subdirectory per unit.
        """
        self._state_dir = state_dir.resolve()
        # Wrappers this object launched: polled so that they do not linger as zombies.
        self._wrappers: dict[str, subprocess.Popen[bytes]] = {}

    async def prepare_image(self, image: str, on_progress: ProgressReport) -> bool:
        return False  # the command runs on the host: there is no image

    async def image_present(self, image: str) -> bool:
        return True  # nothing to pull

    async def start(self, spec: ContainerSpec) -> StartResult:
        """Launch the trainer, or reattach if the unit already has a pid or an exit code.

        Raises:
            InvalidSpecError: The command is empty, its executable cannot be found or run, or
                the checkpoint directory cannot be created.
        """
        return await asyncio.to_thread(self._start, spec)

    async def wait(self, name: str, timeout: float) -> int | None:
        """Poll for the exit code for at most ``timeout`` seconds; None while still running.

        Raises:
            LookupError: There is no such unit.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            code = await asyncio.to_thread(self._poll, name)
            remaining = deadline - loop.time()
            if code is not None or remaining <= 0:
                return code
            await asyncio.sleep(min(_POLL_SECONDS, remaining))

    async def exit_details(self, name: str) -> UnitExit:
        """The exit code: a process has no engine to restart it and no memory limit."""
        code, _ = await asyncio.to_thread(self._outcome, name)
        if code is None:
            raise LookupError(f"{name} has not exited")
        return UnitExit(code)

    async def logs(self, name: str, tail: int | None = None) -> str:
        """Combined stdout and stderr, the last ``tail`` lines if given.

        Raises:
            LookupError: There is no such unit.
        """
        return await asyncio.to_thread(read_output, self._unit_dir(name), tail)

    async def stop(self, name: str, grace_seconds: float) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace_seconds``; the exit code.

        Returns None for a missing unit, or if the trainer outlives even SIGKILL for a while.
        """
        code, pid = await asyncio.to_thread(self._outcome, name)
        if code is not None or pid is None:
            return code
        logger.info("stopping unit %s (process group %d)", name, pid)
        signal_group(pid, signal.SIGTERM)
        try:
            code = await self.wait(name, grace_seconds)
            # Even after a clean exit: children the trainer left behind still hold resources.
            signal_group(pid, signal.SIGKILL)
            if code is None:
                code = await self.wait(name, _KILL_WAIT_SECONDS)
        except LookupError:
            return None
        return code

    async def remove(self, name: str) -> None:
        """Kill the unit if it still runs and delete its directory; missing is fine."""
        code, pid = await asyncio.to_thread(self._outcome, name)
        if code is None and pid is not None:
            signal_group(pid, signal.SIGKILL)
            with contextlib.suppress(LookupError):
                await self.wait(name, _KILL_WAIT_SECONDS)
        await asyncio.to_thread(self._delete, name)

    async def list_units(self, run_id: str | None = None) -> list[tuple[str, dict[str, str], bool]]:
        """``(name, labels, running)`` of every unit whose labels carry a job id (and
        ``run_id``, if given)."""
        units = await asyncio.to_thread(self._list_units)
        return [u for u in units if run_id is None or u[1].get(LABEL_RUN_ID) == run_id]

    def stream_output(self, name: str) -> AsyncIterator[bytes]:
        """Follow ``output.log`` from its start until the trainer has exited and it is read."""
        return stream_in_thread(lambda stop: self._follow(name, stop))

    # Synchronous halves, run in worker threads.

    def _unit_dir(self, name: str) -> Path:
        if not name or "/" in name or name in (".", ".."):
            raise InvalidSpecError(f"invalid unit name {name!r}")
        return self._state_dir / name

    def _start(self, spec: ContainerSpec) -> StartResult:
        env = {key: os.environ[key] for key in _KEPT_ENV if key in os.environ}
        env.setdefault("PATH", os.defpath)
        env.update(spec.env)
        if problem := executable_problem(spec.command, env["PATH"]):
            raise InvalidSpecError(problem)
        if spec.checkpoint_host_dir is not None:
            try:
                spec.checkpoint_host_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InvalidSpecError(f"cannot create checkpoint directory: {exc}") from exc
        unit = self._unit_dir(spec.name)
        unit.mkdir(parents=True, exist_ok=True)
        with locked(unit) as lock_fd:
            if (unit / "pid").exists() or (unit / "exit_code").exists():
                logger.info("reattached to unit %s", spec.name)
                return StartResult(reattached=True)
            write_atomically(unit / "labels.json", json.dumps(spec.labels))
            self._launch(unit, spec, env, lock_fd)
        # The wrapper inherited the lock and releases it once the trainer runs or failed to.
        with locked(unit):
            pass
        if not (unit / "pid").exists():
            detail = (unit / "output.log").read_text(errors="replace").strip() or "no output"
            if (unit / "exit_code").exists():
                shutil.rmtree(unit, ignore_errors=True)
                raise InvalidSpecError(f"cannot start {spec.command!r}: {detail}")
            raise RuntimeError(f"the wrapper of unit {spec.name} died before launching: {detail}")
        logger.info("started unit %s: %s", spec.name, spec.command)
        return StartResult(reattached=False)

    def _launch(self, unit: Path, spec: ContainerSpec, env: dict[str, str], lock_fd: int) -> None:
        # Command and environment go through stdin: nothing secret on disk or in `ps` output.
        request = json.dumps({"command": spec.command, "env": env}).encode()
        with open(unit / "output.log", "ab") as log:
            wrapper = subprocess.Popen(
                [sys.executable, "-I", str(_WRAPPER), str(unit), str(lock_fd)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(lock_fd,),
                env=env,
                # Apart from the worker's session, a Ctrl-C or a SIGTERM aimed at the worker's
                # process group does not take the supervisor down with it.
                start_new_session=True,
            )
        self._wrappers[spec.name] = wrapper
        assert wrapper.stdin is not None
        # A supervisor that died at once is diagnosed by start() from the log, not from here.
        with contextlib.suppress(BrokenPipeError):
            wrapper.stdin.write(request)
            wrapper.stdin.close()

    def _reap(self) -> None:
        for name, wrapper in list(self._wrappers.items()):
            if wrapper.poll() is not None:
                self._wrappers.pop(name, None)

    def _outcome(self, name: str) -> tuple[int | None, int | None]:
        unit = self._unit_dir(name)
        return read_int(unit / "exit_code"), read_pid(unit / "pid")

    def _poll(self, name: str) -> int | None:
        self._reap()
        unit = self._unit_dir(name)
        code = read_int(unit / "exit_code")
        if code is not None:
            return code
        pid = read_pid(unit / "pid")
        if pid is None:
            if unit.is_dir() and start_in_flight(unit):
                return None
            raise LookupError(name)
        wrapper_pid = read_pid(unit / "wrapper_pid")
        if wrapper_pid is not None and alive(wrapper_pid, marker=_WRAPPER.name):
            return None
        # The wrapper may have recorded the code just before it exited.
        code = read_int(unit / "exit_code")
        if code is not None:
            return code
        if alive(pid):
            return None  # Orphaned trainer: still running, and its status is unknowable.
        logger.warning("wrapper of unit %s died; its exit status is lost", name)
        with open(unit / "output.log", "a", encoding="utf-8") as log:
            log.write(f"[process runtime] supervisor died; reporting exit {_LOST_EXIT_CODE}\n")
        write_atomically(unit / "exit_code", f"{_LOST_EXIT_CODE}\n")
        return _LOST_EXIT_CODE

    def _follow(self, name: str, stop: StreamStop) -> Iterator[bytes]:
        path = self._unit_dir(name) / "output.log"
        with open(path, "rb") as log:
            exited = False
            while not stop.is_set():
                chunk = log.read(65_536)
                if chunk:
                    yield chunk
                elif exited:
                    return  # whatever the trainer wrote before it exited has been read
                elif self._poll(name) is not None:
                    exited = True
                else:
                    stop.wait(_POLL_SECONDS)

    def _delete(self, name: str) -> None:
        self._reap()
        self._wrappers.pop(name, None)
        unit = self._unit_dir(name)
        shutil.rmtree(unit, ignore_errors=True)
        if unit.exists():  # A racing temporary file; a second pass finds it settled.
            shutil.rmtree(unit)

    def _list_units(self) -> list[tuple[str, dict[str, str], bool]]:
        self._reap()
        if not self._state_dir.is_dir():
            return []
        units = []
        for unit in sorted(self._state_dir.iterdir()):
            try:
                labels = json.loads((unit / "labels.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(labels, dict) or LABEL_JOB_ID not in labels:
                continue
            pid = read_pid(unit / "pid")
            running = pid is not None and not (unit / "exit_code").exists() and alive(pid)
            units.append((unit.name, {str(k): str(v) for k, v in labels.items()}, running))
        return units
