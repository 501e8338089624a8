"""Operating a job's runs through the API: cancel, logs and checkpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import JobNotRunning
from core.settings import Settings
from jobs import views
from jobs.responses import CheckpointList, CheckpointResponse, JobResponse
from jobs.temporal import JobSchedules
from store import audit, checkpoints, log_files
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
        yield (await self.log_text(job_id, tail)).encode()
        offsets = {
            path: path.stat().st_size
            for _, path in log_files.attempt_logs(self._settings.log_dir, job_id, run_id)
        }
        while True:
            latest, finished = await self.latest_run(job_id)
            for attempt, path in log_files.attempt_logs(self._settings.log_dir, job_id, run_id):
                if path not in offsets:
                    offsets[path] = 0
                    yield f"--- attempt {attempt} ---\n".encode()
                while chunk := await asyncio.to_thread(_read_from, path, offsets[path]):
                    offsets[path] += len(chunk)
                    yield chunk
            if finished or latest != run_id:
                return
            await asyncio.sleep(_POLL_SECONDS)


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
