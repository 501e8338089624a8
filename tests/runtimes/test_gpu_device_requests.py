"""Leased GPU ids become Docker device requests by id (GPU_DEVICE_REQUESTS=true).

There is no GPU here, so the container is created and inspected, never started.
"""

from __future__ import annotations

import uuid

import docker

from runtimes.base import ContainerSpec
from runtimes.docker_options import create_kwargs


def spec(busybox_image: str, **fields: object) -> ContainerSpec:
    values: dict[str, object] = {
        "name": f"orch-gpu-{uuid.uuid4().hex[:8]}",
        "job_id": "gpu-job",
        "run_id": "gpu-run",
        "attempt": 1,
        "image": busybox_image,
        "command": ["true"],
        "resources": {"gpus": 2},
        **fields,
    }
    return ContainerSpec(**values)  # type: ignore[arg-type]


def created_device_requests(kwargs: dict[str, object]) -> object:
    client = docker.from_env()
    container = client.containers.create(**kwargs)
    try:
        container.reload()
        return container.attrs["HostConfig"]["DeviceRequests"]
    finally:
        container.remove(force=True)
        client.close()


def test_leased_ids_are_the_device_request(busybox_image: str) -> None:
    kwargs = create_kwargs(spec(busybox_image, gpu_ids=["1", "3"]), "none", None)
    requests = created_device_requests(kwargs)

    assert isinstance(requests, list) and len(requests) == 1
    assert requests[0]["DeviceIDs"] == ["1", "3"]
    assert requests[0]["Count"] in (0, None)
    assert requests[0]["Capabilities"] == [["gpu"]]


def test_without_device_requests_only_the_environment_carries_the_ids(busybox_image: str) -> None:
    leased = spec(
        busybox_image,
        gpu_ids=["1"],
        gpu_device_requests=False,
        env={"CUDA_VISIBLE_DEVICES": "1", "NVIDIA_VISIBLE_DEVICES": "1"},
    )
    requests = created_device_requests(create_kwargs(leased, "none", None))

    assert not requests
