"""The activity that runs one training attempt in the configured container runtime."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.attempt_watcher import AttemptWatcher
from activities.heartbeat import Heartbeat, beat_interval
from core.settings import Settings
from runtimes.base import (
    ContainerRuntime,
    ContainerSpec,
    ImageUnavailableError,
    InvalidSpecError,
    RuntimeUnavailableError,
    StartResult,
    unit_name,
)
from store import checkpoints
from store import runs as run_store
from store.log_files import attempt_log_path, last_lines
from store.models import utcnow
from workflows.models import (
    IMAGE_UNAVAILABLE,
    INVALID_SPEC,
    RUN_TRAINING_CONTAINER,
    RUNTIME_UNAVAILABLE,
    AttemptOutcome,
    ResumePolicy,
    RunAttemptInput,
)

LOG_TAIL_LINES = 20
# After the unit exits, how long its output stream may take to drain.
_DRAIN_SECONDS = 10.0


def checkpoint_host_dir(root: Path, checkpoint_path: str) -> Path:
    """Host directory behind a job's checkpoint path; refuses anything outside the root."""
    host_dir = (root / checkpoint_path.lstrip("/")).resolve()
    if not host_dir.is_relative_to(root.resolve()):
        raise InvalidSpecError(f"checkpoint_path {checkpoint_path!r} leaves the checkpoint root")
    return host_dir


class TrainingActivities:
    """Holds the runtime and session factory built once by worker.py."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        self._runtime = runtime
        self._sessions = sessions
        self._settings = settings

    @activity.defn(name=RUN_TRAINING_CONTAINER)
    async def run_training_container(self, request: RunAttemptInput) -> AttemptOutcome:
        """Start (or reattach to) the attempt's container and follow it to its exit.

        Heartbeats from start to finish with the trainer's progress. Only a cancel the
        workflow asked for stops the container: a lost heartbeat, an unreachable server, a
        pause, a reset or a worker shutdown leave it training, Temporal retries the activity
        and the retry reattaches to the same container by name.
        """
        name = unit_name(request.job_id, request.run_id, request.attempt)
        previous_start = _recorded_start()
        heartbeat = Heartbeat(
            beat_interval(self._settings.poll_interval_seconds),
            {
                "attempt": request.attempt,
                "container": name,
                "started_at": previous_start.isoformat() if previous_start else None,
                "progress": None,
            },
        )
        async with heartbeat.running():
            return await self._run_attempt(request, heartbeat, previous_start)

    async def _run_attempt(
        self, request: RunAttemptInput, heartbeat: Heartbeat, previous_start: datetime | None
    ) -> AttemptOutcome:
        following = _Following()
        try:
            return await self._attempt(request, heartbeat, previous_start, following)
        except asyncio.CancelledError:
            name = unit_name(request.job_id, request.run_id, request.attempt)
            if not _cancel_requested():
                # Temporal lost track of this try (heartbeat timeout, server gone or reset,
                # paused) or the worker is shutting down: the trainer must not pay for it.
                activity.logger.warning(
                    "interrupted (%s); %s keeps running for the retry to reattach",
                    activity.cancellation_details() or "no details",
                    name,
                )
                if following.task is not None:
                    following.task.cancel()
                if following.start is not None:
                    following.start.add_done_callback(_ignore_outcome)
                raise
            # The run is being cancelled, in whichever phase this try was.
            await self._stop_on_request(name, request, following, previous_start)
            raise

    async def _attempt(
        self,
        request: RunAttemptInput,
        heartbeat: Heartbeat,
        previous_start: datetime | None,
        following: _Following,
    ) -> AttemptOutcome:
        log_path = attempt_log_path(
            self._settings.log_dir, request.job_id, request.run_id, request.attempt
        )
        if (recorded := await self._recorded_outcome(request, log_path)) is not None:
            return recorded
        try:
            host_dir = checkpoint_host_dir(
                self._settings.checkpoint_root_dir, request.spec.checkpoint_path
            )
            spec = await self._spec(request, host_dir)
            # The engine finishes a start it has begun whatever happens to this task; a
            # requested cancel waits for it (see _stop_on_request) so it can stop the unit.
            following.start = asyncio.ensure_future(self._runtime.start(spec))
            started = await asyncio.shield(following.start)
        except RuntimeUnavailableError as err:
            raise ApplicationError(str(err), type=RUNTIME_UNAVAILABLE, non_retryable=True) from err
        except InvalidSpecError as err:
            raise ApplicationError(str(err), type=INVALID_SPEC, non_retryable=True) from err
        except ImageUnavailableError as err:
            raise ApplicationError(str(err), type=IMAGE_UNAVAILABLE) from err
        if started.reattached:
            activity.logger.info("reattached to %s", spec.name)

        # A retry keeps the first start: the time limit counts from it.
        first_start = previous_start or utcnow()
        heartbeat.update(started_at=first_start.isoformat())
        async with self._sessions() as session:
            await run_store.record_attempt_start(
                session, request.job_id, request.run_id, request.attempt, first_start
            )
        watcher = AttemptWatcher(
            sessions=self._sessions,
            job_id=request.job_id,
            run_id=request.run_id,
            attempt=request.attempt,
            log_path=log_path,
            checkpoint_dir=host_dir,
        )
        heartbeat.add_source(watcher.heartbeat_details)
        following.watcher = watcher
        following.task = asyncio.create_task(watcher.follow(self._runtime, spec.name))
        exit_code, timed_out = await self._wait(spec.name, request, watcher, first_start)
        await self._finish(spec.name, request, watcher, following.task, exit_code)
        tail = await asyncio.to_thread(_read_tail, log_path)
        return AttemptOutcome(
            exit_code=exit_code,
            log_tail=tail,
            reattached=started.reattached,
            timed_out=timed_out,
        )

    async def _stop_on_request(
        self,
        name: str,
        request: RunAttemptInput,
        following: _Following,
        previous_start: datetime | None,
    ) -> None:
        """Stop the attempt's unit for a requested cancel, record its end and remove it."""
        if following.start is not None:
            with contextlib.suppress(Exception):  # failed to start: stopping finds nothing
                await following.start
        stopped = await self._runtime.stop(name, self._settings.stop_grace_seconds)
        if following.watcher is not None and following.task is not None:
            await self._finish(name, request, following.watcher, following.task, stopped)
            return
        # Cancelled before this try followed the unit (it may be an earlier try's): the
        # attempt still ran, however briefly.
        if stopped is not None:
            async with self._sessions() as session:
                await run_store.record_attempt_start(
                    session,
                    request.job_id,
                    request.run_id,
                    request.attempt,
                    previous_start or utcnow(),
                )
                await run_store.record_attempt_end(
                    session, request.run_id, request.attempt, stopped, utcnow()
                )
        await self._runtime.remove(name)

    async def _recorded_outcome(
        self, request: RunAttemptInput, log_path: Path
    ) -> AttemptOutcome | None:
        """The outcome an earlier try of this activity recorded, if the attempt is over.

        The end is recorded before the unit is removed and the result reported: a try
        interrupted after that (its result lost with a Temporal outage, say) must not start
        the trainer again, so its retry reports what was recorded instead.
        """
        async with self._sessions() as session:
            row = await run_store.find_attempt(session, request.run_id, request.attempt)
        if row is None or row.ended_at is None or row.exit_code is None:
            return None
        name = unit_name(request.job_id, request.run_id, request.attempt)
        activity.logger.info(
            "%s already ended with exit code %d; reporting it", name, row.exit_code
        )
        try:
            await self._runtime.remove(name)  # the earlier try may not have got that far
        except Exception as err:  # the reconciler removes it later; the outcome stands
            activity.logger.warning("could not remove %s: %s", name, err)
        # Not recorded as such: an attempt stopped at its limit ran past it and failed.
        limit = request.spec.timeout_seconds
        ran = (row.ended_at - row.started_at).total_seconds()
        return AttemptOutcome(
            exit_code=row.exit_code,
            log_tail=await asyncio.to_thread(_read_tail, log_path),
            reattached=True,
            timed_out=limit is not None and ran > limit and row.exit_code != 0,
        )

    async def _spec(self, request: RunAttemptInput, host_dir: Path) -> ContainerSpec:
        spec = request.spec
        # A runtime that mounts the directory shows it at the job's path; else the host's.
        mounted = self._runtime.mounts_checkpoints
        checkpoint_dir = spec.checkpoint_path if mounted else str(host_dir)
        env = dict(spec.env)
        for name in spec.secret_env:
            value = os.environ.get(name)
            if value is None:
                raise InvalidSpecError(f"secret_env {name} is not set in the worker's environment")
            env[name] = value
        env |= {
            "JOB_ID": request.job_id,
            "RUN_ID": request.run_id,
            "ATTEMPT": str(request.attempt),
            "CHECKPOINT_DIR": checkpoint_dir,
        }
        if resume_from := await self._resume_from(request):
            env["RESUME_FROM"] = f"{checkpoint_dir.rstrip('/')}/{resume_from}"
        await asyncio.to_thread(host_dir.mkdir, parents=True, exist_ok=True)
        return ContainerSpec(
            name=unit_name(request.job_id, request.run_id, request.attempt),
            job_id=request.job_id,
            run_id=request.run_id,
            attempt=request.attempt,
            image=spec.image,
            command=spec.command,
            env=env,
            checkpoint_host_dir=host_dir,
            checkpoint_mount_path=spec.checkpoint_path if mounted else None,
            resources=spec.resources,
            deployment=self._settings.deployment,
        )

    async def _resume_from(self, request: RunAttemptInput) -> str | None:
        """The checkpoint this attempt resumes from, relative to the checkpoint directory."""
        if request.spec.resume_policy is ResumePolicy.NEVER:
            return None
        run_only = request.spec.resume_policy is ResumePolicy.RETRIES
        async with self._sessions() as session:
            latest = await checkpoints.latest_checkpoint(
                session, request.job_id, request.run_id if run_only else None
            )
        return latest.path if latest is not None else None

    async def _wait(
        self,
        name: str,
        request: RunAttemptInput,
        watcher: AttemptWatcher,
        first_start: datetime,
    ) -> tuple[int, bool]:
        """Poll until the unit exits or its time is up; (exit code, timed out)."""
        loop = asyncio.get_running_loop()
        next_scan = loop.time() + self._settings.checkpoint_scan_seconds
        while True:
            exit_code = await self._runtime.wait(name, self._settings.poll_interval_seconds)
            if exit_code is not None:
                return exit_code, False
            if loop.time() >= next_scan:
                # Unannounced checkpoints are recorded as they appear, once they settle.
                await watcher.scan_checkpoints(settled_only=True)
                next_scan = loop.time() + self._settings.checkpoint_scan_seconds
            elapsed = (utcnow() - first_start).total_seconds()
            limit = request.spec.timeout_seconds
            if limit is not None and elapsed > limit:
                activity.logger.info("%s exceeded its %d s", name, limit)
                code = await self._runtime.stop(name, self._settings.stop_grace_seconds)
                return (code if code is not None else 137), True

    async def _finish(
        self,
        name: str,
        request: RunAttemptInput,
        watcher: AttemptWatcher,
        following: asyncio.Task[None],
        exit_code: int | None,
    ) -> None:
        """Drain the output, record the last checkpoints and the exit, remove the unit."""
        try:
            await asyncio.wait_for(asyncio.shield(following), _DRAIN_SECONDS)
        except TimeoutError:
            following.cancel()
            activity.logger.warning("output of %s did not drain in time", name)
        except Exception as err:  # the log is incomplete, the outcome still stands
            activity.logger.warning("following the output of %s failed: %s", name, err)
        await watcher.scan_checkpoints(settled_only=False)
        async with self._sessions() as session:
            await run_store.record_attempt_end(
                session, request.run_id, request.attempt, exit_code, utcnow()
            )
        await self._runtime.remove(name)


@dataclass
class _Following:
    """How far one try got: the start it asked for, then the watcher following the unit."""

    start: asyncio.Future[StartResult] | None = None
    watcher: AttemptWatcher | None = None
    task: asyncio.Task[None] | None = None


def _ignore_outcome(future: asyncio.Future[StartResult]) -> None:
    """Retrieve a start nobody waits for any more (the retry starts or reattaches)."""
    if not future.cancelled():
        future.exception()


def _recorded_start() -> datetime | None:
    """When an earlier try of this activity started the attempt, from its last heartbeat."""
    for detail in activity.info().heartbeat_details:
        if isinstance(detail, dict) and isinstance(detail.get("started_at"), str):
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(detail["started_at"])
    return None


def _cancel_requested() -> bool:
    """Whether the workflow asked for this cancel (the run is being cancelled).

    The SDK cancels an activity for other reasons too: its heartbeat timed out, the server no
    longer knows it, it was paused or reset, a local timeout, the worker is shutting down.
    """
    details = activity.cancellation_details()
    return details is not None and details.cancel_requested


def _read_tail(path: Path) -> str:
    try:
        return last_lines(path.read_text(encoding="utf-8", errors="replace"), LOG_TAIL_LINES)
    except FileNotFoundError:
        return ""
