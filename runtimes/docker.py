"""Run training attempts as Docker containers through the docker SDK.

The SDK is synchronous, so every public method hands one whole operation to a worker thread
with :func:`asyncio.to_thread`; the event loop never waits on the engine.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from runtimes.base import (
    LABEL_JOB_ID,
    LABEL_RUN_ID,
    ContainerSpec,
    ImageUnavailableError,
    InvalidSpecError,
    ProgressReport,
    RuntimeUnavailableError,
    StartResult,
    StreamStop,
    UnitExit,
    stream_in_thread,
)
from runtimes.docker_errors import (
    init_exec_failure,
    is_bad_command,
    is_transport_error,
    unreachable_message,
)
from runtimes.docker_errors import why as _why
from runtimes.docker_images import PullPolicy, prepare_image
from runtimes.docker_options import Hardening, create_kwargs, mounts_of
from runtimes.docker_state import FINISHED_STATES, read_exit, wait_for_exit

logger = logging.getLogger(__name__)


def client_get(client: docker.DockerClient, name: str) -> Container | None:
    try:
        return client.containers.get(name)
    except NotFound:
        return None


_T = TypeVar("_T")
# At most this many attempts wait on their containers at once without queueing.
_WAIT_THREADS = 256


class DockerRuntime:
    """A :class:`~runtimes.base.ContainerRuntime` backed by a Docker engine.

    Containers are named after the attempt (``spec.name``), which is what makes a restarted
    activity find and follow the container a crashed worker left behind.
    """

    # The checkpoint directory is bind-mounted at the job's checkpoint_path.
    mounts_checkpoints = True

    def __init__(
        self,
        client_factory: Callable[[], docker.DockerClient] = docker.from_env,
        network_mode: str = "bridge",
        pull_policy: PullPolicy = "if-not-present",
        engine_url: str | None = None,
        hardening: Hardening | None = None,
    ) -> None:
        """Configure the runtime; the engine is not contacted until the first call.

        Args:
            client_factory: Builds the docker client (``docker.from_env`` honours DOCKER_HOST).
            network_mode: Docker network of every container; ``"host"`` only if the operator
                asks for it explicitly.
            pull_policy: When to pull images: ``if-not-present``, ``always`` or ``never``.
            engine_url: Where ``client_factory`` connects, for messages about an engine it
                could not reach (DOCKER_HOST by default).
            hardening: Capabilities, limits, init and user of every container.
        """
        self._engine_url = engine_url
        self._client_factory = client_factory
        self._network_mode = network_mode
        self._pull_policy: PullPolicy = pull_policy
        self._hardening = hardening or Hardening()
        self._docker: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        # Waits block a thread for up to a poll interval per running attempt: on threads of
        # their own, so that many running attempts never hold up the starts of others in the
        # loop's small default pool. Threads are made on demand.
        self._wait_threads = ThreadPoolExecutor(_WAIT_THREADS, thread_name_prefix="docker-wait")

    async def start(self, spec: ContainerSpec) -> StartResult:
        """Create and start the container, or reattach to one that already has the name.

        Never pulls: :meth:`prepare_image` did that first.

        Raises:
            RuntimeUnavailableError: The engine cannot be reached.
            ImageUnavailableError: The image is not on the engine.
            InvalidSpecError: The image name, mount or command can never work.
        """
        return await self._call(self._start, spec)

    async def prepare_image(self, image: str, on_progress: ProgressReport) -> bool:
        """Make ``image`` present as the pull policy says; True if it was pulled.

        ``on_progress`` gets a summary of the pull (layers, bytes) from the pulling thread.

        Raises:
            RuntimeUnavailableError: The engine cannot be reached.
            ImageUnavailableError: The image is missing and could not be pulled.
            InvalidSpecError: The image name is not a valid reference.
        """
        stop = threading.Event()
        try:
            return await asyncio.to_thread(
                lambda: prepare_image(self._client(), image, self._pull_policy, on_progress, stop)
            )
        finally:
            stop.set()  # a cancelled pull's thread stops at the engine's next message

    async def image_present(self, image: str) -> bool:
        """Whether ``image`` is on the engine and the pull policy lets it be used as it is."""
        if self._pull_policy == "always":
            return False
        try:
            return await self._call(self._image_present, image)
        except (RuntimeUnavailableError, DockerException, requests.RequestException):
            return False  # the pull_image activity tells what is wrong

    async def wait(self, name: str, timeout: float) -> int | None:
        """Wait at most ``timeout`` seconds for the container to exit.

        Returns:
            The exit code, or None if the container is still running.

        Raises:
            LookupError: No container has this name.
            RuntimeUnavailableError: The engine cannot be reached (it may be restarting).
        """
        return await self._call(self._wait, name, timeout, threads=self._wait_threads)

    async def exit_details(self, name: str) -> UnitExit:
        """How the exited container ended: out of memory, or killed by an engine restart.

        A failed exit is read on a new connection: an engine shutting down closes its API
        before it stops containers, so a container it stopped is seen to exit only while it
        can no longer be asked about, and the answer waits for the engine's return.

        Raises:
            LookupError: No container has this name.
            RuntimeUnavailableError: The engine cannot be reached (it may be restarting).
        """
        return await self._call(self._exit_details, name)

    async def logs(self, name: str, tail: int | None = None) -> str:
        """Combined stdout and stderr, the last ``tail`` lines if given.

        Raises:
            LookupError: No container has this name.
        """
        return await self._call(self._logs, name, tail)

    async def stop(self, name: str, grace_seconds: float) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_seconds``; the exit code, None if missing."""
        return await self._call(self._stop, name, grace_seconds)

    async def remove(self, name: str) -> None:
        """Force-remove the container; a missing one is fine."""
        await self._call(self._remove, name)

    async def list_units(self, run_id: str | None = None) -> list[tuple[str, dict[str, str], bool]]:
        """``(name, labels, running)`` of every container carrying the job-id label (and
        ``run_id``'s label, if given: the engine filters, however many containers it has)."""
        return await self._call(self._list_units, run_id)

    async def _call(
        self, work: Callable[..., _T], *args: Any, threads: ThreadPoolExecutor | None = None
    ) -> _T:
        """Run ``work`` on a thread; an engine that cannot be talked to is unavailable."""
        try:
            if threads is not None:
                return await asyncio.get_running_loop().run_in_executor(threads, work, *args)
            return await asyncio.to_thread(work, *args)
        except (requests.RequestException, DockerException) as exc:
            if not is_transport_error(exc):
                raise
            url = self._engine_url or (self._docker.api.base_url if self._docker else None)
            raise RuntimeUnavailableError(unreachable_message(exc, url)) from exc

    def stream_output(self, name: str) -> AsyncIterator[bytes]:
        """Follow the container's log from its first line until it exits."""

        def open_stream(stop: StreamStop) -> Iterator[bytes]:
            stream = self._get(name).logs(stdout=True, stderr=True, stream=True, follow=True)
            # Closing the response ends a read blocked on a container that prints nothing.
            stop.on_stop(stream.close)
            return cast(Iterator[bytes], stream)

        return stream_in_thread(open_stream)

    # Synchronous halves, run in worker threads.

    def _client(self) -> docker.DockerClient:
        with self._client_lock:
            if self._docker is None:
                client: docker.DockerClient | None = None
                try:
                    client = self._client_factory()
                    # A factory given an explicit API version never talks to the engine.
                    client.ping()
                except (DockerException, requests.RequestException) as exc:
                    url = self._engine_url or (client.api.base_url if client else None)
                    raise RuntimeUnavailableError(unreachable_message(exc, url)) from exc
                self._docker = client
            return self._docker

    def _get(self, name: str) -> Container:
        try:
            return self._client().containers.get(name)
        except NotFound:
            raise LookupError(name) from None

    def _start(self, spec: ContainerSpec) -> StartResult:
        # Created first, looked up only if the name is taken: a first start (the common case)
        # costs the engine two requests, not three.
        mounts = mounts_of(spec, self._hardening.user)
        client = self._client()
        try:
            container = client.containers.create(
                **create_kwargs(spec, self._network_mode, mounts, self._hardening)
            )
        except ImageNotFound as exc:
            # prepare_image (the pull_image activity) made it ready on this engine: it was
            # removed since, which a retry on another placement can mend.
            raise ImageUnavailableError(
                f"image {spec.image} is not on this worker's engine: {_why(exc)}"
            ) from exc
        except APIError as exc:
            if exc.status_code == 409:
                return self._reattach(spec)
            if exc.is_client_error():
                raise InvalidSpecError(f"cannot create {spec.name}: {_why(exc)}") from exc
            raise
        self._start_created(container, spec)
        logger.info("started container %s from %s", spec.name, spec.image)
        return StartResult(reattached=False)

    def _reattach(self, spec: ContainerSpec) -> StartResult:
        """The container already has the name (a retried start, a concurrent one)."""
        existing = client_get(self._client(), spec.name)
        if existing is None:
            # Removed between our create and our look: the name is free again.
            return self._start(spec)
        if existing.status == "created":
            # The worker died between create and start: this is still the first start.
            self._start_created(existing, spec)
        logger.info("reattached to container %s (%s)", spec.name, existing.status)
        return StartResult(reattached=True)

    def _start_created(self, container: Container, spec: ContainerSpec) -> None:
        try:
            container.start()
        except APIError as exc:
            reason = _why(exc)
            # A container that failed to start would otherwise be reattached to forever.
            try:
                container.remove(force=True)
            except NotFound:
                pass
            # Anything else (a mount, cgroups, the runtime) is the host's trouble: retried.
            if is_bad_command(reason):
                raise InvalidSpecError(
                    f"command {spec.command!r} cannot be started in image {spec.image}: {reason}"
                ) from exc
            raise
        if self._hardening.init and (failure := init_exec_failure(container)):
            container.remove(force=True)
            raise InvalidSpecError(
                f"command {spec.command!r} cannot be started in image {spec.image}: {failure}"
            )

    def _image_present(self, image: str) -> bool:
        try:
            self._client().images.get(image)
        except (NotFound, APIError):  # missing, or not a valid reference
            return False
        return True

    def _wait(self, name: str, timeout: float) -> int | None:
        return wait_for_exit(self._get(name), timeout)

    def _exit_details(self, name: str) -> UnitExit:
        return read_exit(self._get(name), self._client_factory)

    def _logs(self, name: str, tail: int | None) -> str:
        data = self._get(name).logs(stdout=True, stderr=True, tail="all" if tail is None else tail)
        return data.decode("utf-8", errors="replace")

    def _stop(self, name: str, grace_seconds: float) -> int | None:
        try:
            container = self._get(name)
            # The engine counts the grace in whole seconds; rounding up never cuts it short.
            container.stop(timeout=math.ceil(max(grace_seconds, 0)))
            container.reload()
        except (LookupError, NotFound):
            return None
        state = container.attrs["State"]
        logger.info("stopped container %s (%s)", name, state["Status"])
        return int(state["ExitCode"]) if state["Status"] in FINISHED_STATES else None

    def _remove(self, name: str) -> None:
        try:
            self._client().api.remove_container(name, force=True)
        except NotFound:
            pass
        except APIError as exc:
            if not (exc.status_code == 409 and "already in progress" in _why(exc)):
                raise

    def _list_units(self, run_id: str | None = None) -> list[tuple[str, dict[str, str], bool]]:
        # The low-level listing is one request and, unlike containers.list(), does not race
        # with containers being removed between the listing and a per-container inspect.
        labels = [LABEL_JOB_ID] + ([f"{LABEL_RUN_ID}={run_id}"] if run_id else [])
        rows = self._client().api.containers(all=True, filters={"label": labels})
        return [
            (row["Names"][0].lstrip("/"), dict(row.get("Labels") or {}), row["State"] == "running")
            for row in rows
        ]
