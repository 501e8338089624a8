"""How a ContainerSpec becomes Docker create arguments: mounts, limits, GPU requests."""

from __future__ import annotations

import logging
from typing import Any

from docker.types import DeviceRequest

from runtimes.base import ContainerSpec, InvalidSpecError

logger = logging.getLogger(__name__)


def create_kwargs(
    spec: ContainerSpec, network_mode: str, volumes: dict[str, dict[str, str]] | None
) -> dict[str, Any]:
    """Arguments of ``containers.create`` for a spec: never privileged, resources as asked."""
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": spec.command or None,
        "name": spec.name,
        "labels": spec.labels,
        "environment": spec.env,
        "network_mode": network_mode,
        "volumes": volumes,
        "privileged": False,
    }
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


def volumes_of(spec: ContainerSpec) -> dict[str, dict[str, str]] | None:
    host_dir, mount_path = spec.checkpoint_host_dir, spec.checkpoint_mount_path
    if host_dir is None and mount_path is None:
        return None
    if host_dir is None or mount_path is None or not mount_path.startswith("/"):
        raise InvalidSpecError(
            f"checkpoint mount needs a host dir and an absolute container path, "
            f"got {host_dir!r} -> {mount_path!r}"
        )
    host_dir = host_dir.resolve()
    try:
        # Created here so it belongs to the worker's user rather than to root, as it would be
        # if the engine created it; the engine may see another filesystem, so failure is fine.
        host_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        logger.debug("could not create %s here; leaving it to the engine", host_dir)
    return {str(host_dir): {"bind": mount_path, "mode": "rw"}}
