"""What one attempt's unit is made of: the job's spec, secrets, checkpoint directories."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.secret_env import secret_env_problem
from core.settings import Settings
from runtimes.base import ContainerRuntime, ContainerSpec, InvalidSpecError, unit_name
from store import checkpoints
from workflows.models import ResumePolicy, RunAttemptInput


def epoch_subdir(epoch: int | None) -> str:
    """Where a copy of the run under ``epoch`` writes, inside the job's checkpoint directory.

    The first placement writes in the directory itself, as always; a run placed again after
    its host was lost writes in ``.epoch-<n>/`` (a dot directory, so no copy's scan takes it
    for a checkpoint), so a stale copy still running on the lost host never overwrites what
    the current copy writes and resumes from.
    """
    return f".epoch-{epoch}" if epoch is not None and epoch > 1 else ""


def checkpoint_host_dir(root: Path, checkpoint_path: str) -> Path:
    """Host directory behind a job's checkpoint path; refuses anything outside the root."""
    host_dir = (root / checkpoint_path.lstrip("/")).resolve()
    if not host_dir.is_relative_to(root.resolve()):
        raise InvalidSpecError(f"checkpoint_path {checkpoint_path!r} leaves the checkpoint root")
    return host_dir


async def container_spec(
    request: RunAttemptInput,
    host_dir: Path,
    runtime: ContainerRuntime,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    incarnation: int = 1,
) -> ContainerSpec:
    """The unit of ``request``: its environment (secrets resolved here, on the worker) and
    the checkpoint directory as the trainer sees it; the resume point follows the policy.

    A later ``incarnation`` (the attempt goes on after an engine restart killed its unit)
    resumes from the latest checkpoint the policy allows, the attempt's own included.
    """
    spec = request.spec
    # A runtime that mounts the directory shows it at the job's path; else the host's.
    mounted = runtime.mounts_checkpoints
    root_dir = spec.checkpoint_path if mounted else str(host_dir)
    subdir = epoch_subdir(request.epoch)
    checkpoint_dir = f"{root_dir.rstrip('/')}/{subdir}" if subdir else root_dir
    env = dict(spec.env)
    for name in spec.secret_env:
        if problem := secret_env_problem(settings, name):
            raise InvalidSpecError(problem)
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
    if request.gpus is not None:
        # The leased ids: CUDA for the trainer, NVIDIA's runtime for the devices it mounts.
        env["CUDA_VISIBLE_DEVICES"] = env["NVIDIA_VISIBLE_DEVICES"] = ",".join(request.gpus)
    if resume_from := await _resume_from(request, sessions):
        # Recorded paths are relative to the job's directory, whichever epoch wrote them.
        env["RESUME_FROM"] = f"{root_dir.rstrip('/')}/{resume_from}"
    if request.epoch is not None:
        env["PLACEMENT_EPOCH"] = str(request.epoch)
    await asyncio.to_thread((host_dir / subdir).mkdir, parents=True, exist_ok=True)
    return ContainerSpec(
        name=unit_name(request.job_id, request.run_id, request.attempt, incarnation),
        job_id=request.job_id,
        run_id=request.run_id,
        attempt=request.attempt,
        image=spec.image,
        command=spec.command,
        env=env,
        checkpoint_host_dir=host_dir,
        checkpoint_mount_path=spec.checkpoint_path if mounted else None,
        resources=spec.resources,
        deployment=settings.deployment,
        incarnation=incarnation,
        gpu_ids=request.gpus,
        gpu_device_requests=settings.gpu_device_requests,
        epoch=request.epoch,
    )


async def _resume_from(
    request: RunAttemptInput, sessions: async_sessionmaker[AsyncSession]
) -> str | None:
    """The checkpoint this attempt resumes from, relative to the checkpoint directory."""
    if request.spec.resume_policy is ResumePolicy.NEVER:
        return None
    run_only = request.spec.resume_policy is ResumePolicy.RETRIES
    async with sessions() as session:
        latest = await checkpoints.latest_checkpoint(
            session, request.job_id, request.run_id if run_only else None
        )
    return latest.path if latest is not None else None
