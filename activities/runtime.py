"""The activity that runs one training attempt in the configured container runtime."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from jobs.config import Settings
from runtimes.base import (
    ContainerRuntime,
    ContainerSpec,
    ImageUnavailableError,
    InvalidSpecError,
    RuntimeUnavailableError,
    unit_name,
)
from workflows.models import (
    IMAGE_UNAVAILABLE,
    INVALID_SPEC,
    RUN_TRAINING_CONTAINER,
    RUNTIME_UNAVAILABLE,
    AttemptOutcome,
    RunAttemptInput,
)

LOG_TAIL_LINES = 20
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def checkpoint_host_dir(root: Path, checkpoint_path: str) -> Path:
    """Host directory behind a job's checkpoint path; refuses anything outside the root."""
    host_dir = (root / checkpoint_path.lstrip("/")).resolve()
    if not host_dir.is_relative_to(root.resolve()):
        raise InvalidSpecError(f"checkpoint_path {checkpoint_path!r} leaves the checkpoint root")
    return host_dir


def attempt_log_path(log_dir: Path, job_id: str, run_id: str, attempt: int) -> Path:
    """Where an attempt's output is kept after its container is removed."""
    return log_dir / _UNSAFE.sub("_", job_id) / _UNSAFE.sub("_", run_id) / f"attempt-{attempt}.log"


class TrainingActivities:
    """Holds the runtime built once by worker.py."""

    def __init__(self, runtime: ContainerRuntime, settings: Settings) -> None:
        self._runtime = runtime
        self._settings = settings

    def _spec(self, request: RunAttemptInput) -> ContainerSpec:
        host_dir = checkpoint_host_dir(self._settings.checkpoint_root_dir, request.checkpoint_path)
        host_dir.mkdir(parents=True, exist_ok=True)
        in_container = self._settings.runtime == "docker"
        checkpoint_dir = request.checkpoint_path if in_container else str(host_dir)
        return ContainerSpec(
            name=unit_name(request.job_id, request.run_id, request.attempt),
            job_id=request.job_id,
            run_id=request.run_id,
            attempt=request.attempt,
            image=request.image,
            command=request.command,
            env={
                "JOB_ID": request.job_id,
                "RUN_ID": request.run_id,
                "ATTEMPT": str(request.attempt),
                "CHECKPOINT_DIR": checkpoint_dir,
            },
            checkpoint_host_dir=host_dir,
            checkpoint_mount_path=request.checkpoint_path if in_container else None,
        )

    @activity.defn(name=RUN_TRAINING_CONTAINER)
    async def run_training_container(self, request: RunAttemptInput) -> AttemptOutcome:
        """Start (or reattach to) the attempt's container and follow it to its exit.

        Heartbeats on every poll tick; a worker that dies stops heartbeating, Temporal retries
        the activity elsewhere and that retry reattaches to the same container by name.
        """
        try:
            spec = self._spec(request)
            started = await self._runtime.start(spec)
        except RuntimeUnavailableError as err:
            raise ApplicationError(str(err), type=RUNTIME_UNAVAILABLE, non_retryable=True) from err
        except InvalidSpecError as err:
            raise ApplicationError(str(err), type=INVALID_SPEC, non_retryable=True) from err
        except ImageUnavailableError as err:
            raise ApplicationError(str(err), type=IMAGE_UNAVAILABLE) from err
        if started.reattached:
            activity.logger.info("reattached to %s", spec.name)

        try:
            exit_code = await self._follow(spec.name, request.attempt)
        except asyncio.CancelledError:
            if activity.is_worker_shutdown():
                # Leave the container running for the next worker to reattach to.
                raise
            await self._runtime.stop(spec.name, self._settings.stop_grace_seconds)
            await self._keep_log(spec.name, request)
            await self._runtime.remove(spec.name)
            raise
        tail = await self._keep_log(spec.name, request)
        await self._runtime.remove(spec.name)
        return AttemptOutcome(exit_code=exit_code, log_tail=tail, reattached=started.reattached)

    async def _follow(self, name: str, attempt: int) -> int:
        while True:
            exit_code = await self._runtime.wait(name, self._settings.poll_interval_seconds)
            activity.heartbeat({"attempt": attempt, "container": name})
            if exit_code is not None:
                return exit_code

    async def _keep_log(self, name: str, request: RunAttemptInput) -> str:
        """Write the attempt's whole output under the data directory; return its last lines."""
        output = await self._runtime.logs(name)
        path = attempt_log_path(
            self._settings.log_dir, request.job_id, request.run_id, request.attempt
        )
        await asyncio.to_thread(_write_text, path, output)
        return "\n".join(output.splitlines()[-LOG_TAIL_LINES:])


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
