"""The runtime an operator chose (``RUNTIME``), built once by the worker.

Adding a runtime is one module with a class that fulfils ``runtimes.base.ContainerRuntime``
and one entry here. Each is imported only when chosen, so a host without Docker never loads
the docker SDK.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from core.settings import Settings
from runtimes.base import ContainerRuntime


def _docker(settings: Settings) -> ContainerRuntime:
    import docker

    from runtimes.docker import DockerRuntime
    from runtimes.docker_options import Hardening

    environment = dict(os.environ)
    if settings.docker_host:
        environment["DOCKER_HOST"] = settings.docker_host

    def client() -> docker.DockerClient:
        # As the docker CLI reads it: DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH.
        return docker.from_env(environment=environment)

    hardening = Hardening(
        cap_add=tuple(settings.container_cap_add),
        pids_limit=settings.container_pids_limit,
        log_max_size=settings.container_log_max_size,
        log_max_files=settings.container_log_max_files,
        init=settings.container_init,
        user=settings.container_user,
    )
    return DockerRuntime(
        client_factory=client,
        network_mode=settings.container_network,
        pull_policy=settings.image_pull_policy,
        engine_url=settings.docker_host,
        hardening=hardening,
    )


def _process(settings: Settings) -> ContainerRuntime:
    # Runs commands on the worker's own host: only when an operator asks for it by name.
    from runtimes.process import ProcessRuntime

    return ProcessRuntime(settings.data_dir.resolve() / "process-runtime")


RUNTIMES: dict[str, Callable[[Settings], ContainerRuntime]] = {
    "docker": _docker,
    "process": _process,
}


def build_runtime(settings: Settings) -> ContainerRuntime:
    """The runtime named by ``settings.runtime``."""
    return RUNTIMES[settings.runtime](settings)
