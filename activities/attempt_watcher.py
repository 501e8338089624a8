"""Following one attempt's output: the log file, progress reports and checkpoints.

The runtime replays a unit's output from its start, so a reattached activity rebuilds the
same log file and sees the same announcements again; recording them is idempotent.

Checkpoints are recorded in the background, one at a time, so neither the output stream nor
the activity's heartbeats wait for a large file to be hashed. A file already recorded for
the job at the same path, size and modification time is not read again, whichever run or
attempt recorded it (the SQL records are the cache).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities import checkpoint_files
from activities.metric_buffer import MetricBuffer
from activities.output_log import OutputCount, Ship, follow_output
from core.settings import LogLimits
from runtimes.base import ContainerRuntime
from runtimes.trainer_protocol import ProgressReport, parse_checkpoint, parse_progress
from store import checkpoints, fencing, metric_history
from store import runs as run_store
from store.models import utcnow

logger = logging.getLogger(__name__)

_PROGRESS_WRITE_INTERVAL = 1.0
# How long close() waits for recordings to notice it (a database call may be slow).
_CLOSE_SECONDS = 10.0


class AttemptWatcher:
    """Consumes a unit's output stream and records what the trainer reports."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        job_id: str,
        run_id: str,
        attempt: int,
        log_path: Path,
        checkpoint_dir: Path,
        limits: LogLimits,
        ship: Ship | None = None,
        epoch: int | None = None,
        checkpoint_prefix: str = "",
    ) -> None:
        self._sessions = sessions
        self._job_id = job_id
        self._run_id = run_id
        self._attempt = attempt
        self._log_path = log_path
        self._limits = limits
        self._ship = ship
        self._checkpoint_dir = checkpoint_dir
        # The placement epoch this copy runs under: once the run is placed again, nothing it
        # reports is recorded (store/fencing.py). Its checkpoints are in a directory of its
        # epoch, recorded relative to the job's checkpoint directory (``checkpoint_prefix``).
        self._epoch = epoch
        self._prefix = checkpoint_prefix
        self.fenced = False
        self.progress: ProgressReport | None = None
        # Bytes of output read: a drain after the unit's exit waits while this grows.
        self.output = OutputCount()
        # Per scanned entry: its (size, mtime) at the last scan, and the states recorded.
        self._scanned: dict[Path, tuple[int, int]] = {}
        self._recorded: dict[Path, set[tuple[int, int]]] = {}
        self._progress_written: ProgressReport | None = None
        # Every report's metrics, for the run's history; written with the progress.
        self._metrics = MetricBuffer()
        self._last_write = 0.0
        # One checkpoint fingerprinted at a time: a file announced and found by a scan at
        # once is hashed by the first, and found in SQL by the second.
        self._fingerprinting = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._scanning: asyncio.Task[None] | None = None
        self._stop = threading.Event()

    async def follow(self, runtime: ContainerRuntime, name: str) -> None:
        """Read the unit's output until it ends, recording as it goes.

        Linear in the output: each byte is split into lines once, only marked lines are
        decoded, and the file stays within its bound. A reattached activity resumes the file
        and skips the output it already holds; a new unit of the attempt appends to it.
        """
        try:
            await follow_output(
                runtime.stream_output(name),
                self._log_path,
                self._limits,
                self._handle_marked,
                source=name,
                count=self.output,
                ship=self._ship,
            )
        finally:
            await self.flush_progress()

    async def _handle_marked(self, line: bytes) -> None:
        await self._handle(line.decode("utf-8", errors="replace"))

    async def _handle(self, line: str) -> None:
        if report := parse_progress(line):
            self.progress = report
            if report.step is not None and report.metrics:
                self._metrics.add(report.step, utcnow(), report.metrics)
            loop = asyncio.get_running_loop()
            if loop.time() - self._last_write >= _PROGRESS_WRITE_INTERVAL:
                await self.flush_progress()
        elif announced := parse_checkpoint(line):
            path = checkpoint_files.resolve_inside(self._checkpoint_dir, announced.path)
            if path is None:
                logger.warning("ignoring checkpoint outside or missing: %s", announced.path)
                return
            self._in_background(self._record(path, announced.step), f"recording {path}")

    async def flush_progress(self) -> None:
        """Write the latest progress, if it changed, and the metric points read since the
        last write to SQL: one batch, however many lines came in between."""
        changed = self.progress is not None and self.progress != self._progress_written
        if not changed and not self._metrics:
            return
        self._last_write = asyncio.get_running_loop().time()
        async with self._sessions() as session:
            if not await self._hold_epoch(session):
                return
            if self.progress is not None and changed:
                self._progress_written = self.progress
                await run_store.record_progress(
                    session, self._run_id, self.progress.as_dict(), utcnow()
                )
            if self._metrics:
                samples, ignored = self._metrics.take()
                await metric_history.append_samples(
                    session,
                    job_id=self._job_id,
                    run_id=self._run_id,
                    samples=samples,
                    ignored=ignored,
                )

    async def flush_if_due(self) -> None:
        """Write what waits, if the last write is a second old: a trainer gone quiet after a
        burst of reports still has its latest ones shown. Failures wait for the next try."""
        if asyncio.get_running_loop().time() - self._last_write < _PROGRESS_WRITE_INTERVAL:
            return
        try:
            await self.flush_progress()
        except Exception as err:  # the database is down: the next write carries it all
            logger.warning("writing progress failed: %s", err)

    def start_scan(self) -> None:
        """Scan for settled checkpoints in the background, unless a scan is still going."""
        if self._scanning is None or self._scanning.done():
            self._scanning = self._in_background(
                self.scan_checkpoints(settled_only=True), "scanning checkpoints"
            )

    async def finish_checkpoints(self) -> None:
        """Wait for the recordings under way, then record everything left (the last scan)."""
        while self._background:
            await asyncio.wait(set(self._background))
        await self.scan_checkpoints(settled_only=False)

    async def close(self) -> None:
        """Stop recording and wait until nothing of it runs (a retry records it all again).

        A checkpoint being hashed stops at its next block rather than read to its end.
        """
        self._stop.set()
        if self._background:
            _, late = await asyncio.wait(set(self._background), timeout=_CLOSE_SECONDS)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)

    def _in_background(self, work: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        async def logged() -> None:
            try:
                await work
            except checkpoint_files.HashingStopped:
                pass  # closed: the next try of the attempt records it
            except Exception as err:  # the last scan records whatever this one missed
                logger.warning("%s failed: %s", what, err)

        task = asyncio.create_task(logged())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def scan_checkpoints(self, *, settled_only: bool) -> None:
        """Record checkpoint files the trainer wrote without announcing them.

        While the trainer runs (``settled_only``), an entry is recorded only once it has not
        changed between two scans, so a file still being written is not taken for a
        checkpoint to resume from; when the attempt is over, everything left is recorded.
        """
        for path in await asyncio.to_thread(checkpoint_files.scan, self._checkpoint_dir):
            try:
                state = await asyncio.to_thread(checkpoint_files.state_of, path)
            except OSError:
                continue  # removed meanwhile
            if self._scanned.get(path) == state and state in self._recorded.get(path, set()):
                continue
            previous, self._scanned[path] = self._scanned.get(path), state
            if settled_only and previous != state:
                continue
            await self._record(path, checkpoint_files.step_from_name(path.name))
            self._recorded.setdefault(path, set()).add(state)

    async def _record(self, path: Path, step: int | None) -> None:
        relative = self._prefix + str(path.relative_to(self._checkpoint_dir.resolve()))
        if self.fenced:
            return
        async with self._fingerprinting:
            try:
                size, sha256, mtime_ns = await self._fingerprint(path, relative)
            except OSError as err:  # deleted or unreadable meanwhile: nothing to resume from
                logger.warning("cannot read checkpoint %s: %s", path, err)
                return
            async with self._sessions() as session:
                if not await self._hold_epoch(session):
                    return
                await checkpoints.record_checkpoint(
                    session,
                    job_id=self._job_id,
                    run_id=self._run_id,
                    attempt=self._attempt,
                    path=relative,
                    step=step,
                    size_bytes=size,
                    sha256=sha256,
                    at=utcnow(),
                    mtime_ns=mtime_ns,
                )

    async def _hold_epoch(self, session: AsyncSession) -> bool:
        """Whether this copy's epoch is still the run's (row locked for the write after)."""
        if self.fenced:
            return False
        if await fencing.hold_current_epoch(session, self._run_id, self._epoch):
            return True
        self.fenced = True
        logger.warning(
            "run %s was placed again since epoch %s: this copy's reports are not recorded",
            self._run_id,
            self._epoch,
        )
        return False

    async def _fingerprint(self, path: Path, relative: str) -> tuple[int, str, int | None]:
        """Size, sha256 and the modification time they hold for (None: it changed meanwhile).

        Reads the file only if no record of the job has it at this size and time.
        """
        size, mtime_ns = await asyncio.to_thread(checkpoint_files.state_of, path)
        async with self._sessions() as session:
            known = await checkpoints.known_sha256(
                session, job_id=self._job_id, path=relative, size_bytes=size, mtime_ns=mtime_ns
            )
        if known is not None:
            return size, known, mtime_ns
        hashed_size, sha256 = await asyncio.to_thread(
            checkpoint_files.fingerprint, path, self._stop
        )
        after = await asyncio.to_thread(checkpoint_files.state_of, path)
        unchanged = after == (size, mtime_ns) and hashed_size == size
        return hashed_size, sha256, mtime_ns if unchanged else None

    def heartbeat_details(self) -> dict[str, Any]:
        return {"progress": self.progress.as_dict() if self.progress else None}
