"""Operating a job's runs through the API: cancel, logs and checkpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import JobNotRunning
from core.settings import Settings
from jobs import views
from jobs.responses import CheckpointList, CheckpointResponse, JobResponse
from jobs.temporal import JobSchedules
from store import audit, checkpoints, log_chunks, log_files
from store import jobs as job_store
from store import runs as run_store
from workflows.models import JobStatus

_POLL_SECONDS = 0.3
_FOLLOW_CHUNK = 65_536


class RunService:
    """What the API can do to a job's current run."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        schedules: JobSchedules,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self._schedules = schedules
        self._settings = settings

    async def cancel(self, job_id: str, actor: str) -> JobResponse:
        """Cancel the running run and wait (bounded) until it has recorded ``cancelled``."""
        async with self._sessions() as session:
            job = await job_store.get_job(session, job_id)
            if not JobStatus(job.status).is_active or job.latest_run_id is None:
                raise JobNotRunning(job_id, job.status)
            await run_store.mark_cancel_requested(session, job.latest_run_id, actor)
            audit.record_change(session, actor, "cancel", job_id, job.latest_run_id)
            await session.commit()
        await self._schedules.cancel_run(job.latest_run_id)
        # The container gets its grace period; the answer waits for the outcome when it can.
        deadline = asyncio.get_running_loop().time() + self._settings.stop_grace_seconds + 15
        while asyncio.get_running_loop().time() < deadline:
            async with self._sessions() as session:
                job = await job_store.get_job(session, job_id)
                if JobStatus(job.status).is_final:
                    break
            await asyncio.sleep(_POLL_SECONDS)
        async with self._sessions() as session:
            return await views.job_view(session, job)

    async def checkpoints(self, job_id: str) -> CheckpointList:
        async with self._sessions() as session:
            job = await job_store.get_job(session, job_id)
            rows = await checkpoints.list_checkpoints(session, job_id)
            latest = await checkpoints.latest_checkpoint(session, job_id)
        return CheckpointList(
            job_id=job_id,
            checkpoint_path=job.checkpoint_path,
            latest=CheckpointResponse.model_validate(latest) if latest else None,
            checkpoints=[CheckpointResponse.model_validate(row) for row in rows],
        )

    async def latest_run(self, job_id: str) -> tuple[str | None, bool]:
        """The job's latest run id and whether that run is over (JobNotFound if no job)."""
        async with self._sessions() as session:
            job = await job_store.get_job(session, job_id)
            run = await run_store.run_of(session, job.latest_run_id)
        if run is None:
            return None, not JobStatus(job.status).is_active
        return run.run_id, JobStatus(run.status).is_final

    async def log_text(self, job_id: str, tail: int | None) -> str:
        """The latest run's output, every attempt in order (the last ``tail`` lines)."""
        run_id, _ = await self.latest_run(job_id)
        if run_id is None:
            return ""
        shipped = await self._shipped_attempts(job_id, run_id)
        if shipped is not None:
            return await self._shipped_text(run_id, shipped, tail)
        files = log_files.attempt_logs(self._settings.log_dir, job_id, run_id)
        if tail is None:
            return await asyncio.to_thread(_join_attempts, files)
        lines = await asyncio.to_thread(log_files.tail_of_attempts, files, tail)
        return "".join(f"{line}\n" for line in lines)

    async def follow_logs(self, job_id: str, tail: int | None) -> AsyncIterator[bytes]:
        """The latest run's output so far, then new output as it is written, until it ends."""
        run_id, _ = await self.latest_run(job_id)
        if run_id is None:
            return
        shipped = await self._shipped_attempts(job_id, run_id)
        yield (await self.log_text(job_id, tail)).encode()
        if shipped is not None:
            source: _LogSource = _ShippedLogs(self._sessions, run_id)
        else:
            source = _LogFiles(self._settings.log_dir, job_id, run_id)
        offsets = await source.sizes()
        while True:
            latest, finished = await self.latest_run(job_id)
            for attempt in await source.attempts():
                if attempt not in offsets:
                    offsets[attempt] = 0
                    yield f"--- attempt {attempt} ---\n".encode()
                while chunk := await source.read(attempt, offsets[attempt]):
                    offsets[attempt] += len(chunk)
                    yield chunk
            if finished or latest != run_id:
                return
            await asyncio.sleep(_POLL_SECONDS)

    async def _shipped_attempts(self, job_id: str, run_id: str) -> list[int] | None:
        """The run's attempts whose output is in the database; None to read files instead
        (LOG_STORAGE=files, or a run from before logs were shipped that left files here)."""
        if self._settings.log_storage != "database":
            return None
        async with self._sessions() as session:
            attempts = await log_chunks.attempts_with_logs(session, run_id)
        if not attempts and log_files.attempt_logs(self._settings.log_dir, job_id, run_id):
            return None
        return attempts

    async def _shipped_text(self, run_id: str, attempts: list[int], tail: int | None) -> str:
        async with self._sessions() as session:
            if tail is not None:
                found: dict[int, list[str]] = {}
                needed = tail
                for attempt in reversed(attempts):
                    if needed <= 0:
                        break
                    found[attempt] = await log_chunks.last_lines(session, run_id, attempt, needed)
                    needed -= len(found[attempt]) + 1
                lines = log_files.combine_tails(
                    attempts, tail, lambda attempt, count: found.get(attempt, [])[-count:]
                )
                return "".join(f"{line}\n" for line in lines)
            parts = []
            for attempt in attempts:
                data = await log_chunks.read_from(session, run_id, attempt, 0)
                text = data.decode("utf-8", errors="replace")
                parts.append(f"--- attempt {attempt} ---\n{text}" if len(attempts) > 1 else text)
        return "".join(parts)


class _LogSource(Protocol):
    async def attempts(self) -> list[int]: ...

    async def sizes(self) -> dict[int, int]: ...

    async def read(self, attempt: int, offset: int) -> bytes: ...


class _LogFiles:
    """A run's attempt logs on this machine's disk (LOG_STORAGE=files)."""

    def __init__(self, log_dir: Path, job_id: str, run_id: str) -> None:
        self._log_dir, self._job_id, self._run_id = log_dir, job_id, run_id

    def _paths(self) -> dict[int, Path]:
        return dict(log_files.attempt_logs(self._log_dir, self._job_id, self._run_id))

    async def attempts(self) -> list[int]:
        return sorted(self._paths())

    async def sizes(self) -> dict[int, int]:
        return {attempt: path.stat().st_size for attempt, path in self._paths().items()}

    async def read(self, attempt: int, offset: int) -> bytes:
        return await asyncio.to_thread(_read_from, self._paths()[attempt], offset)


class _ShippedLogs:
    """A run's attempt logs as the workers shipped them to the database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], run_id: str) -> None:
        self._sessions, self._run_id = sessions, run_id

    async def attempts(self) -> list[int]:
        async with self._sessions() as session:
            return await log_chunks.attempts_with_logs(session, self._run_id)

    async def sizes(self) -> dict[int, int]:
        async with self._sessions() as session:
            attempts = await log_chunks.attempts_with_logs(session, self._run_id)
            return {a: await log_chunks.stored_size(session, self._run_id, a) for a in attempts}

    async def read(self, attempt: int, offset: int) -> bytes:
        async with self._sessions() as session:
            data = await log_chunks.read_from(
                session, self._run_id, attempt, offset, limit=_FOLLOW_CHUNK
            )
        return data[:_FOLLOW_CHUNK]


def _join_attempts(files: list[tuple[int, Path]]) -> str:
    parts = []
    for attempt, path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(f"--- attempt {attempt} ---\n{text}" if len(files) > 1 else text)
    return "".join(parts)


def _read_from(path: Path, offset: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(_FOLLOW_CHUNK)
