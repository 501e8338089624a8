"""The contract every container runtime fulfils.

A runtime runs one training attempt as a named unit (a Docker container or a local process
group). Names are derived from the run and attempt, so a restarted activity finds the unit a
crashed worker left behind and reattaches to it instead of starting a second one. An attempt
whose unit was killed by its engine's restart goes on in a new unit, the attempt's next
*incarnation*: a new name, the same labels plus the incarnation number.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

LABEL_PREFIX = "io.training-orchestrator"
LABEL_JOB_ID = f"{LABEL_PREFIX}.job-id"
LABEL_RUN_ID = f"{LABEL_PREFIX}.run-id"
LABEL_ATTEMPT = f"{LABEL_PREFIX}.attempt"
# Which unit of the attempt this is: 1, then one more after each engine restart that killed it.
LABEL_INCARNATION = f"{LABEL_PREFIX}.incarnation"
# Which orchestrator started the unit (Temporal address, namespace, task queue): several may
# share one Docker engine, and each reconciler must only touch its own units.
LABEL_DEPLOYMENT = f"{LABEL_PREFIX}.deployment"
# The run's placement epoch the unit was started under (units of runs without a lease, and
# from before epochs, carry none): a unit of an older epoch than its run's is stale.
LABEL_EPOCH = f"{LABEL_PREFIX}.epoch"

# Receives a small summary of a pull's progress (layers, bytes), from the pulling thread.
ProgressReport = Callable[[dict[str, Any]], None]

_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def unit_name(job_id: str, run_id: str, attempt: int, incarnation: int = 1) -> str:
    """Name of the container (or process directory) of one attempt of one run.

    Temporal workflow ids of scheduled runs contain ``:`` and other characters Docker rejects,
    so the run id enters the name as a short hash; the job id is kept readable. The first
    incarnation keeps the name units had before incarnations existed (``...-a1``); later ones
    add theirs (``...-a1-i2``).
    """
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:12]
    name = f"orch-{_UNSAFE.sub('-', job_id)}-{digest}-a{attempt}"
    return name if incarnation == 1 else f"{name}-i{incarnation}"


def epoch_of(labels: dict[str, str]) -> int | None:
    """The placement epoch a unit's labels give (None: the unit carries none)."""
    value = labels.get(LABEL_EPOCH, "")
    return int(value) if value.isdigit() else None


def incarnation_of(labels: dict[str, str]) -> int:
    """The incarnation a unit's labels give (units from before incarnations are the first)."""
    value = labels.get(LABEL_INCARNATION, "1")
    return int(value) if value.isdigit() and int(value) > 0 else 1


@dataclass(frozen=True)
class ContainerSpec:
    """Everything a runtime needs to start one training attempt."""

    name: str
    job_id: str
    run_id: str
    attempt: int
    image: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Host directory holding the job's checkpoints and the path the trainer sees it at.
    checkpoint_host_dir: Path | None = None
    checkpoint_mount_path: str | None = None
    # ``gpus`` (count or "all"), ``cpus`` (float), ``memory`` ("8g"); see jobs.fields.Resources.
    resources: dict[str, Any] | None = None
    deployment: str = ""
    incarnation: int = 1
    # GPU ids leased for the attempt (None: no lease, ``resources.gpus`` counts as before);
    # without device requests the ids reach the trainer only through its environment.
    gpu_ids: list[str] | None = None
    gpu_device_requests: bool = True
    epoch: int | None = None

    @property
    def labels(self) -> dict[str, str]:
        labels = {
            LABEL_JOB_ID: self.job_id,
            LABEL_RUN_ID: self.run_id,
            LABEL_ATTEMPT: str(self.attempt),
            LABEL_INCARNATION: str(self.incarnation),
            LABEL_DEPLOYMENT: self.deployment,
        }
        if self.epoch is not None:
            labels[LABEL_EPOCH] = str(self.epoch)
        return labels


@dataclass(frozen=True)
class StartResult:
    """What :meth:`ContainerRuntime.start` found or did."""

    reattached: bool


@dataclass(frozen=True)
class UnitExit:
    """How a unit ended, as far as its runtime can tell."""

    code: int
    # The kernel killed it for using more memory than its limit (Docker's State.OOMKilled).
    oom_killed: bool = False
    # The unit's memory limit as Docker writes one ("64m"), if it had one.
    memory_limit: str | None = None
    # Its engine restarted under it and killed it: not the trainer's doing (see
    # docs/operations.md, "Engine restarts", for how this is told and where it cannot be).
    killed_by_engine_restart: bool = False


class RuntimeUnavailableError(Exception):
    """The runtime cannot be reached (no Docker engine, or one that is restarting).

    An infrastructure failure: retried a bounded number of times (INFRA_MAX_ATTEMPTS).
    """


class ImageUnavailableError(Exception):
    """The image could not be pulled, or is gone at start. Retried a bounded number of times."""


class InvalidSpecError(Exception):
    """The command, image name or mount can never work. Not retried."""


class ContainerRuntime(Protocol):
    """A place to run training attempts. Every method is async and never blocks the loop."""

    @property
    def mounts_checkpoints(self) -> bool:
        """True when the unit sees the job's checkpoint directory at ``checkpoint_path``
        (a bind mount); False when it runs on the host and sees the host directory."""
        ...

    async def prepare_image(self, image: str, on_progress: ProgressReport) -> bool:
        """Make ``image`` ready for :meth:`start` (pulling it if need be); True if pulled.

        A long pull reports a small summary of its progress (layers, bytes) to
        ``on_progress``, from another thread. A runtime without images returns False.
        """
        ...

    async def image_present(self, image: str) -> bool:
        """Whether :meth:`start` could use ``image`` now, with no pull: present, and a pull
        policy that does not ask for one. Never pulls, never raises (False when unsure: the
        pull_image activity then makes the image ready or says why it cannot)."""
        ...

    async def start(self, spec: ContainerSpec) -> StartResult:
        """Start the unit named ``spec.name``, or reattach to it if it already exists.

        An existing unit is never started twice: if it is running it is followed, if it has
        already exited its exit code is what :meth:`wait` reports. Never pulls an image.
        """
        ...

    async def wait(self, name: str, timeout: float) -> int | None:
        """Wait at most ``timeout`` seconds; the exit code, or None while still running."""
        ...

    async def exit_details(self, name: str) -> UnitExit:
        """How a unit that :meth:`wait` saw exit ended: memory, engine restart.

        Raises:
            LookupError: No unit has this name, or it has not exited.
            RuntimeUnavailableError: The runtime cannot tell now (an engine going down).
        """
        ...

    async def logs(self, name: str, tail: int | None = None) -> str:
        """Combined stdout and stderr of the unit (the last ``tail`` lines if given)."""
        ...

    async def stop(self, name: str, grace_seconds: float) -> int | None:
        """SIGTERM, wait up to ``grace_seconds``, then SIGKILL. Returns the exit code."""
        ...

    async def remove(self, name: str) -> None:
        """Forget the unit once its outcome and logs have been read. Missing is fine."""
        ...

    def stream_output(self, name: str) -> AsyncIterator[bytes]:
        """The unit's combined output from its start, live, ending when the unit has exited."""
        ...

    async def list_units(self, run_id: str | None = None) -> list[tuple[str, dict[str, str], bool]]:
        """``(name, labels, running)`` of every unit this runtime started (of ``run_id``'s
        only, if given: a start lists one run's units, not the whole host's)."""
        ...


class StreamStop(threading.Event):
    """Set when the consumer of a stream is gone; closers registered with it run then."""

    def __init__(self) -> None:
        super().__init__()
        self._closers: list[Callable[[], object]] = []
        self._lock = threading.Lock()

    def on_stop(self, close: Callable[[], object]) -> None:
        """Run ``close`` when the stream stops (at once if it already has)."""
        with self._lock:
            if not self.is_set():
                self._closers.append(close)
                return
        close()

    def set(self) -> None:
        with self._lock:
            super().set()
            closers, self._closers = self._closers, []
        for close in closers:
            with contextlib.suppress(Exception):  # closing a broken stream may fail: fine
                close()


# Output read but not yet taken by the consumer: past this the reader waits, so a slow consumer
# slows the reader instead of filling memory.
STREAM_BUFFER_BYTES = 4 * 1024 * 1024
# How long a closed stream waits for its reader thread to end.
READER_EXIT_SECONDS = 5.0


async def stream_in_thread(
    open_stream: Callable[[StreamStop], Iterator[bytes]],
) -> AsyncIterator[bytes]:
    """Iterate a blocking byte stream on a thread without blocking the event loop.

    The thread appends to a bounded buffer and wakes the loop only when the buffer stops
    being empty, so output written in many small pieces crosses threads in few large ones.
    When the consumer stops early (cancelled, or the generator closed), ``stop`` is set: the
    thread ends at its next piece, and a stream that could block for long registers a closer
    with ``stop.on_stop`` to end it at once, so no thread outlives the activity that read it.
    A daemon thread rather than the default executor: a stream blocked when the worker exits
    must not hold the process open.
    """
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    stop = StreamStop()
    lock = threading.Condition()
    buffer = bytearray()
    ended: list[Exception | None] = []  # [error or None] once the stream is over

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody listens
            loop.call_soon_threadsafe(ready.set)

    def pump() -> None:
        error: Exception | None = None
        try:
            for chunk in open_stream(stop):
                with lock:
                    while len(buffer) >= STREAM_BUFFER_BYTES and not stop.is_set():
                        lock.wait(0.5)
                    if stop.is_set():
                        return
                    was_empty = not buffer
                    buffer.extend(chunk)
                if was_empty:
                    wake()
        except Exception as err:  # handed to the consumer, which re-raises it
            error = err
        finally:
            with lock:
                ended.append(error)
            wake()

    reader = threading.Thread(target=pump, name="output-stream", daemon=True)
    reader.start()
    try:
        while True:
            await ready.wait()
            ready.clear()
            with lock:
                data, over = bytes(buffer), list(ended)
                buffer.clear()
                lock.notify_all()
            if data:
                yield data
            if over:
                if over[0] is not None:
                    raise over[0]
                return
    finally:
        stop.set()
        with lock:
            lock.notify_all()
        # Closed (or cancelled) means the reader is gone, not going: wait for its end, bounded
        # in case a closer cannot interrupt its read.
        deadline = loop.time() + READER_EXIT_SECONDS
        while reader.is_alive() and loop.time() < deadline:
            await asyncio.sleep(0.01)
