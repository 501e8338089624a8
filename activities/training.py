"""The activity that runs one training attempt in the configured container runtime.

An attempt is followed to its end whatever happens around it, and each kind of trouble is
paid for by whoever caused it:

* a lost worker (crash, deploy, lost heartbeat): Temporal retries the activity, without
  limit, and the retry reattaches to the attempt's unit by name. Nothing is counted.
* an engine restart that killed the unit: the attempt goes on in the next incarnation of
  its unit, resuming from the latest checkpoint (``activities/incarnations.py``). Nothing is
  counted, and the workflow sees one attempt.
* the activity's own infrastructure failures (engine unreachable, image not pulled, a start
  the engine refused): at most INFRA_MAX_ATTEMPTS in a row (``activities/infrastructure.py``).
* the trainer's own end (its exit code, out of memory, its time limit): the outcome, which
  the workflow counts against ``max_retries`` if it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import incarnations, infrastructure
from activities.admission import release_and_wake
from activities.attempt_watcher import AttemptWatcher
from activities.container_spec import checkpoint_host_dir, container_spec, epoch_subdir
from activities.fault_points import pause_at
from activities.fencing import stop_units_of_epochs
from activities.heartbeat import Heartbeat, beat_interval
from activities.images import prepare_image
from activities.infrastructure import InfraRecord, infrastructure_failure
from activities.interruptions import Following, cancel_requested, ignore_outcome, recorded_start
from activities.log_shipping import log_shipper
from activities.output_drain import drain_output
from activities.output_log import append_note
from activities.recorded_outcomes import recorded_outcome
from activities.self_fence import SelfFence
from activities.unit_wait import wait_for_exit
from core.settings import Settings
from runtimes.base import ContainerRuntime, InvalidSpecError, unit_name
from store import fencing
from store import runs as run_store
from store.log_files import attempt_log_path, read_tail
from store.models import utcnow
from workflows.models import (
    FENCED,
    INVALID_SPEC,
    RUN_TRAINING_CONTAINER,
    SELF_FENCED,
    AttemptOutcome,
    RunAttemptInput,
)


class TrainingActivities:
    """Holds the runtime and session factory built once by worker.py."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        fence: SelfFence | None = None,
    ) -> None:
        self._runtime = runtime
        self._sessions = sessions
        self._settings = settings
        # The worker's self-fence (activities/self_fence.py); None: never fenced.
        self._fence = fence

    @activity.defn(name=RUN_TRAINING_CONTAINER)
    async def run_training_container(self, request: RunAttemptInput) -> AttemptOutcome:
        """Start (or reattach to) the attempt's container and follow it to its exit.

        Heartbeats from start to finish with the trainer's progress. Only a cancel the
        workflow asked for stops the container: a lost heartbeat, an unreachable server, a
        pause, a reset or a worker shutdown leave it training, Temporal retries the activity
        and the retry reattaches to the same container by name. Whichever way a try ends,
        nothing it ran in the background (output follower, reader thread, checkpoint
        hashing) outlives it.
        """
        previous_start = recorded_start()
        infra = infrastructure.recorded()
        heartbeat = Heartbeat(
            beat_interval(self._settings.poll_interval_seconds),
            {
                "attempt": request.attempt,
                "container": unit_name(request.job_id, request.run_id, request.attempt),
                "started_at": previous_start.isoformat() if previous_start else None,
                "progress": None,
                **infra.details(),
            },
        )
        following = Following()
        heartbeat.add_source(
            lambda: following.watcher.heartbeat_details() if following.watcher else {}
        )
        generation = self._fence.generation if self._fence else 0
        async with heartbeat.running():
            try:
                return await self._attempt(
                    request, heartbeat, previous_start, following, generation
                )
            except asyncio.CancelledError:
                await self._interrupted(request, following, previous_start)
                raise
            except InvalidSpecError as err:
                raise ApplicationError(str(err), type=INVALID_SPEC, non_retryable=True) from err
            except ApplicationError as err:
                if err.type in (FENCED, SELF_FENCED):
                    raise
                if self._self_fenced(generation):
                    raise self._fence_error() from err
                raise await self._infrastructure_failure(err, request, heartbeat) from err
            except Exception as err:
                if self._self_fenced(generation):
                    # The worker stopped the unit under this try: not the infrastructure's
                    # failure, nor the trainer's.
                    raise self._fence_error() from err
                raise await self._infrastructure_failure(err, request, heartbeat) from err
            finally:
                await following.close()

    async def _attempt(
        self,
        request: RunAttemptInput,
        heartbeat: Heartbeat,
        previous_start: datetime | None,
        following: Following,
        generation: int = 0,
    ) -> AttemptOutcome:
        if self._self_fenced(generation):
            raise self._fence_error()  # before any call to a database it may not reach
        log_path = attempt_log_path(
            self._settings.log_dir, request.job_id, request.run_id, request.attempt
        )
        # Both only read (the database, the engine's list of units): asked at once, as every
        # millisecond here is one before the container starts.
        recorded, incarnation = await asyncio.gather(
            recorded_outcome(self._runtime, self._sessions, request, log_path),
            incarnations.current_incarnation(self._runtime, request.run_id, request.attempt),
        )
        if recorded is not None:
            return recorded
        await self._check_epoch(request)
        if not request.image_ready:
            # A run from before pull_image: its attempts make their image ready themselves
            # (a failed pull is one of this activity's infrastructure failures).
            await prepare_image(self._runtime, request.spec.image, heartbeat)
        host_dir = checkpoint_host_dir(
            self._settings.checkpoint_root_dir, request.spec.checkpoint_path
        )
        subdir = epoch_subdir(request.epoch)
        while True:
            if self._self_fenced(generation):
                # Cut off (now or since this try began): nothing starts or is followed here
                # until the worker has renewed; the retry starts from the latest checkpoint.
                raise self._fence_error()
            spec = await container_spec(
                request, host_dir, self._runtime, self._sessions, self._settings, incarnation
            )
            following.name = spec.name
            heartbeat.update(container=spec.name, incarnation=incarnation)
            # The engine finishes a start it has begun whatever happens to this task; a
            # requested cancel waits for it (see _stop_on_request) so it can stop the unit.
            following.start = asyncio.ensure_future(self._runtime.start(spec))
            started = await asyncio.shield(following.start)
            if self._self_fenced(generation):
                # The fence tripped while the engine started it, maybe after listing the
                # units to stop: this try stops it itself.
                await self._runtime.stop(spec.name, self._settings.stop_grace_seconds)
                await self._runtime.remove(spec.name)
                raise self._fence_error()
            await pause_at(self._settings, "start")
            await incarnations.remove_units(
                self._runtime, request.run_id, request.attempt, below=incarnation
            )
            if started.reattached:
                activity.logger.info("reattached to %s", spec.name)
            # A retry and a new incarnation keep the first start: the time limit counts from it.
            first_start = previous_start = previous_start or utcnow()
            heartbeat.update(started_at=first_start.isoformat())
            async with self._sessions() as session:
                await run_store.record_attempt_start(
                    session, request.job_id, request.run_id, request.attempt, first_start
                )
            following.watcher = watcher = AttemptWatcher(
                sessions=self._sessions,
                job_id=request.job_id,
                run_id=request.run_id,
                attempt=request.attempt,
                log_path=log_path,
                checkpoint_dir=host_dir / subdir,
                checkpoint_prefix=f"{subdir}/" if subdir else "",
                epoch=request.epoch,
                limits=self._settings.log_limits,
                ship=log_shipper(
                    self._settings,
                    self._sessions,
                    job_id=request.job_id,
                    run_id=request.run_id,
                    attempt=request.attempt,
                ),
            )
            following.task = asyncio.create_task(watcher.follow(self._runtime, spec.name))
            ended, timed_out = await wait_for_exit(
                self._runtime,
                spec.name,
                following,
                self._settings,
                first_start=first_start,
                limit_seconds=request.spec.timeout_seconds,
                # The engine answered about the unit: failures before were not in a row.
                on_healthy=lambda: heartbeat.update(**InfraRecord().details()),
            )
            if self._self_fenced(generation):
                # The worker stopped this unit, cut off: its exit is not the trainer's, and
                # nothing of it is recorded (the fence removed the unit).
                activity.logger.warning("%s was stopped by this worker's self-fence", spec.name)
                raise self._fence_error()
            if ended.killed_by_engine_restart and not timed_out:
                # Not the trainer's doing: its checkpoints are recorded, and the attempt goes
                # on in a new unit that resumes from the latest.
                await drain_output(spec.name, following)
                await watcher.finish_checkpoints()
                await following.close()
                incarnation += 1
                note = (
                    f"engine restarted and killed the trainer (exit code {ended.code}); "
                    f"it resumes in a new container, incarnation {incarnation}"
                )
                activity.logger.warning("%s: %s", spec.name, note)
                await asyncio.to_thread(append_note, log_path, note)
                continue
            if request.release_on_exit and (ended.code == 0 or request.last_attempt):
                await self._release_early(request)
            await pause_at(self._settings, "finish")
            await self._finish(spec.name, request, following, ended.code)
            # Bounded: the tail rides in the result, which Temporal limits in size.
            return AttemptOutcome(
                exit_code=ended.code,
                log_tail=await asyncio.to_thread(read_tail, log_path),
                reattached=started.reattached,
                timed_out=timed_out,
                oom_killed=ended.oom_killed,
                memory_limit=ended.memory_limit,
            )

    def _self_fenced(self, generation: int) -> bool:
        return self._fence is not None and self._fence.tripped_since(generation)

    def _fence_error(self) -> ApplicationError:
        assert self._fence is not None
        return self._fence.error()

    async def _release_early(self, request: RunAttemptInput) -> None:
        """The run is over and its container has exited: its GPUs hold no process of it any
        more, so the lease goes now and the next queued run starts while this attempt's
        output is drained, its container removed and its status recorded. Best effort: the
        workflow's own release (idempotent) follows in any case."""
        try:
            await release_and_wake(
                activity.client(),
                self._sessions,
                self._settings.task_queue,
                timedelta(seconds=self._settings.worker_lost_seconds),
                request.run_id,
            )
        except Exception as err:  # the workflow's release_capacity gives it back
            activity.logger.warning("early release of %s failed: %s", request.run_id, err)

    async def _interrupted(
        self, request: RunAttemptInput, following: Following, previous_start: datetime | None
    ) -> None:
        if cancel_requested():
            # The run is being cancelled, in whichever phase this try was.
            await self._stop_on_request(request, following, previous_start)
            return
        # Temporal lost track of this try (heartbeat timeout, server gone or reset, paused)
        # or the worker is shutting down: the trainer must not pay for it, unless the run was
        # placed again meanwhile (this host was taken for lost): then this copy is stale.
        if await self._stop_if_stale(request):
            return
        activity.logger.warning(
            "interrupted (%s); %s keeps running for the retry to reattach",
            activity.cancellation_details() or "no details",
            following.name or "the attempt's unit",
        )
        if following.start is not None:
            following.start.add_done_callback(ignore_outcome)

    async def _check_epoch(self, request: RunAttemptInput) -> None:
        """Before anything starts or is followed: a stale copy stops, older epochs' units go."""
        if request.epoch is None:
            return
        async with self._sessions() as session:
            current = await fencing.is_current(session, request.run_id, request.epoch)
        grace = self._settings.stop_grace_seconds
        if not current:
            await stop_units_of_epochs(
                self._runtime, request.run_id, request.attempt, grace, at=request.epoch
            )
            raise ApplicationError(
                f"run {request.run_id} was placed again since epoch {request.epoch}: "
                "this copy is stale and was stopped",
                type=FENCED,
                non_retryable=True,
            )
        # Units an earlier placement left on this engine (the host was back in time to be
        # chosen again): they write where this copy must not read.
        await stop_units_of_epochs(
            self._runtime, request.run_id, request.attempt, grace, below=request.epoch
        )

    async def _stop_if_stale(self, request: RunAttemptInput) -> bool:
        """Stop this copy's units if its run was placed again; True if it did."""
        if request.epoch is None:
            return False
        try:
            async with self._sessions() as session:
                current = await fencing.is_current(session, request.run_id, request.epoch)
            if current:
                return False
            await stop_units_of_epochs(
                self._runtime,
                request.run_id,
                request.attempt,
                self._settings.stop_grace_seconds,
                at=request.epoch,
            )
        except Exception as err:  # the worker's sweep stops it later
            activity.logger.warning("cannot fence %s: %s", request.run_id, err)
            return False
        activity.logger.warning(
            "run %s was placed again since epoch %s: stopped this copy",
            request.run_id,
            request.epoch,
        )
        return True

    async def _infrastructure_failure(
        self, err: Exception, request: RunAttemptInput, heartbeat: Heartbeat
    ) -> ApplicationError:
        """This try's failure, recorded in the heartbeat the next try reads."""
        error, after = infrastructure_failure(
            err,
            infrastructure.record_in(heartbeat.details()),
            attempt_started=heartbeat.details().get("started_at") is not None,
            now=utcnow(),
            limit=self._settings.infra_max_attempts,
            outage_seconds=self._settings.engine_outage_seconds,
        )
        activity.logger.warning("%s", error.message)
        heartbeat.update(**after.details())
        heartbeat.beat_now()
        if error.non_retryable:
            # Given up: the run fails, so nothing of the attempt may train on.
            try:
                stopped = await incarnations.stop_units(
                    self._runtime,
                    request.run_id,
                    request.attempt,
                    self._settings.stop_grace_seconds,
                )
                async with self._sessions() as session:
                    await run_store.record_attempt_end(
                        session, request.run_id, request.attempt, stopped, utcnow()
                    )
            except Exception as cleanup:  # the reconciler removes what is left, later
                activity.logger.warning("could not stop the attempt's units: %s", cleanup)
        return error

    async def _stop_on_request(
        self, request: RunAttemptInput, following: Following, previous_start: datetime | None
    ) -> None:
        """Stop the attempt's unit for a requested cancel, record its end and remove it."""
        if following.start is not None:
            with contextlib.suppress(Exception):  # failed to start: stopping finds nothing
                await following.start
        name = following.name or unit_name(
            request.job_id,
            request.run_id,
            request.attempt,
            await incarnations.current_incarnation(self._runtime, request.run_id, request.attempt),
        )
        stopped = await self._runtime.stop(name, self._settings.stop_grace_seconds)
        if following.watcher is not None and following.task is not None:
            await self._finish(name, request, following, stopped)
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
        await incarnations.remove_units(self._runtime, request.run_id, request.attempt)

    async def _finish(
        self, name: str, request: RunAttemptInput, following: Following, exit_code: int | None
    ) -> None:
        """Drain the output, record the last checkpoints and the exit, remove the units."""
        await drain_output(name, following)
        if following.watcher is not None:
            await following.watcher.finish_checkpoints()  # heartbeats go on: hashing is slow
        async with self._sessions() as session:
            await run_store.record_attempt_end(
                session, request.run_id, request.attempt, exit_code, utcnow()
            )
        await pause_at(self._settings, "result")
        await incarnations.remove_units(self._runtime, request.run_id, request.attempt)
