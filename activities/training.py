"""The activity that runs one training attempt in the configured container runtime."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.attempt_watcher import AttemptWatcher
from activities.container_spec import checkpoint_host_dir, container_spec
from activities.fault_points import pause_at
from activities.heartbeat import Heartbeat, beat_interval
from activities.images import make_image_ready
from activities.interruptions import (
    Following,
    cancel_requested,
    ignore_outcome,
    recorded_start,
)
from core.settings import Settings
from runtimes.base import (
    ContainerRuntime,
    ImageUnavailableError,
    InvalidSpecError,
    RuntimeUnavailableError,
    unit_name,
)
from store import runs as run_store
from store.log_files import attempt_log_path, read_tail
from store.models import utcnow
from workflows.models import (
    IMAGE_UNAVAILABLE,
    INVALID_SPEC,
    RUN_TRAINING_CONTAINER,
    RUNTIME_UNAVAILABLE,
    AttemptOutcome,
    RunAttemptInput,
)

# After the unit exits, how long its output stream may take to drain.
_DRAIN_SECONDS = 10.0


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
        previous_start = recorded_start()
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
        following = Following()
        try:
            return await self._attempt(request, heartbeat, previous_start, following)
        except asyncio.CancelledError:
            name = unit_name(request.job_id, request.run_id, request.attempt)
            if not cancel_requested():
                # Temporal lost track of this try (heartbeat timeout, server gone or reset,
                # paused) or the worker is shutting down: the trainer must not pay for it.
                activity.logger.warning(
                    "interrupted (%s); %s keeps running for the retry to reattach",
                    activity.cancellation_details() or "no details",
                    name,
                )
                if following.task is not None:
                    following.task.cancel()
                if following.watcher is not None:
                    following.watcher.abandon()
                if following.start is not None:
                    following.start.add_done_callback(ignore_outcome)
                raise
            # The run is being cancelled, in whichever phase this try was.
            await self._stop_on_request(name, request, following, previous_start)
            raise

    async def _attempt(
        self,
        request: RunAttemptInput,
        heartbeat: Heartbeat,
        previous_start: datetime | None,
        following: Following,
    ) -> AttemptOutcome:
        log_path = attempt_log_path(
            self._settings.log_dir, request.job_id, request.run_id, request.attempt
        )
        if (recorded := await self._recorded_outcome(request, log_path)) is not None:
            return recorded
        if not request.image_ready:
            # A run from before pull_image: its attempts make their image ready themselves.
            await make_image_ready(self._runtime, request.spec.image, heartbeat)
        try:
            host_dir = checkpoint_host_dir(
                self._settings.checkpoint_root_dir, request.spec.checkpoint_path
            )
            spec = await container_spec(
                request, host_dir, self._runtime, self._sessions, self._settings
            )
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
        await pause_at(self._settings, "start")

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
            limits=self._settings.log_limits,
        )
        heartbeat.add_source(watcher.heartbeat_details)
        following.watcher = watcher
        following.task = asyncio.create_task(watcher.follow(self._runtime, spec.name))
        exit_code, timed_out = await self._wait(spec.name, request, watcher, first_start)
        await pause_at(self._settings, "finish")
        await self._finish(spec.name, request, watcher, following.task, exit_code)
        # Bounded: the tail rides in the result, which Temporal limits in size.
        tail = await asyncio.to_thread(read_tail, log_path)
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
        following: Following,
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
            log_tail=await asyncio.to_thread(read_tail, log_path),
            reattached=True,
            timed_out=limit is not None and ran > limit and row.exit_code != 0,
        )

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
            await watcher.flush_if_due()
            if loop.time() >= next_scan:
                # Unannounced checkpoints are recorded as they appear, once they settle; in
                # the background, as hashing a large one takes longer than a heartbeat timeout.
                watcher.start_scan()
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
        await watcher.finish_checkpoints()  # heartbeats go on meanwhile: hashing takes time
        async with self._sessions() as session:
            await run_store.record_attempt_end(
                session, request.run_id, request.attempt, exit_code, utcnow()
            )
        await pause_at(self._settings, "result")
        await self._runtime.remove(name)
