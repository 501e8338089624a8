"""How a ContainerSpec becomes Docker create arguments: mounts, limits, GPUs and hardening."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.types import DeviceRequest, LogConfig, Mount

from runtimes.base import ContainerSpec, InvalidSpecError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hardening:
    """What every training container gets whatever its image asks (CONTAINER_* settings).

    No capabilities but ``cap_add``; no privilege gained through setuid binaries; at most
    ``pids_limit`` processes (a fork bomb stays inside); Docker's json-file log capped at
    ``log_max_files`` files of ``log_max_size``; Docker's init as PID 1, so a SIGTERM reaches
    a shell's children and a cancel does not wait out the grace period; and, with ``user``
    (``uid`` or ``uid:gid``), not root inside the container either.
    """

    cap_add: tuple[str, ...] = ()
    pids_limit: int = 4096
    log_max_size: str = "1g"
    log_max_files: int = 2
    init: bool = True
    user: str | None = None


def create_kwargs(
    spec: ContainerSpec,
    network_mode: str,
    mounts: list[Mount] | None,
    hardening: Hardening = Hardening(),  # noqa: B008 - frozen, so one shared default is safe
) -> dict[str, Any]:
    """Arguments of ``containers.create`` for a spec: hardened, resources as asked."""
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": spec.command or None,
        "name": spec.name,
        "labels": spec.labels,
        "environment": spec.env,
        "network_mode": network_mode,
        "mounts": mounts or [],
        "privileged": False,
        "cap_drop": ["ALL"],
        "cap_add": list(hardening.cap_add) or None,
        "security_opt": ["no-new-privileges:true"],
        "pids_limit": hardening.pids_limit,
        "log_config": LogConfig(
            type=LogConfig.types.JSON,
            config={"max-size": hardening.log_max_size, "max-file": str(hardening.log_max_files)},
        ),
        "init": hardening.init,
    }
    if hardening.user:
        kwargs["user"] = hardening.user
    resources = spec.resources or {}
    gpus = resources.get("gpus")
    if spec.gpu_ids is not None:
        # Leased ids, never a count: a count maps to the host's first GPUs, whoever has them.
        if spec.gpu_ids and spec.gpu_device_requests:
            kwargs["device_requests"] = [
                DeviceRequest(device_ids=list(spec.gpu_ids), capabilities=[["gpu"]])
            ]
    elif gpus == "all" or (isinstance(gpus, int) and gpus > 0):
        count = -1 if gpus == "all" else int(gpus)
        kwargs["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]
    if resources.get("cpus"):
        kwargs["nano_cpus"] = int(float(resources["cpus"]) * 1_000_000_000)
    if resources.get("memory"):
        kwargs["mem_limit"] = str(resources["memory"]).lower()
    return kwargs


def mounts_of(spec: ContainerSpec, user: str | None = None) -> list[Mount] | None:
    """The checkpoint directory as a structured bind mount (no ``host:ctr:mode`` string to
    split), created here, owned by the container's user, and free of symbolic links."""
    host_dir, mount_path = spec.checkpoint_host_dir, spec.checkpoint_mount_path
    if host_dir is None and mount_path is None:
        return None
    if host_dir is None or mount_path is None or not mount_path.startswith("/"):
        raise InvalidSpecError(
            f"checkpoint mount needs a host dir and an absolute container path, "
            f"got {host_dir!r} -> {mount_path!r}"
        )
    host_dir = Path(os.path.abspath(host_dir))
    # The engine follows links in a bind source: one planted by another job's container
    # (in a directory above this one) would mount whatever it points to. Checked before the
    # directory is created (mkdir would follow the link too) and again after.
    existing = host_dir
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    _refuse_links(existing)
    try:
        # Created here so it belongs to the worker's user rather than to root, as it would be
        # if the engine created it; the engine may see another filesystem, so failure is fine.
        host_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        logger.debug("could not create %s here; leaving it to the engine", host_dir)
    _refuse_links(host_dir)
    _give_to(host_dir, user)
    return [Mount(target=mount_path, source=str(host_dir), type="bind", read_only=False)]


def _refuse_links(path: Path) -> None:
    if os.path.realpath(path) != str(path):
        raise InvalidSpecError(f"checkpoint directory {path} passes through a symbolic link")


def _give_to(host_dir: Path, user: str | None) -> None:
    """Let the container's user write the directory: without capabilities, even the image's
    root can no longer write where the worker's own user owns the directory."""
    if not host_dir.is_dir():
        return
    try:
        if user:
            uid, _, gid = user.partition(":")
            os.chown(host_dir, int(uid), int(gid or uid))
        elif os.getuid() != 0:
            host_dir.chmod(0o777)
    except PermissionError as err:
        raise InvalidSpecError(f"cannot hand {host_dir} to the container's user: {err}") from err
