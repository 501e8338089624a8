"""What this worker offers: its GPU ids, CPUs and memory, detected unless configured."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from core.settings import Settings

logger = logging.getLogger(__name__)
# Threads one training attempt keeps busy in blocking engine calls (start or wait, output
# follower, checkpoint scans), and what the bookkeeping and pulls need besides.
THREADS_PER_ATTEMPT = 4
THREADS_BESIDES_ATTEMPTS = 8


@dataclass(frozen=True)
class Inventory:
    """One worker's capacity, as it registers it."""

    name: str
    pool: str
    task_queue: str
    gpus: list[str]
    cpus: float
    memory_bytes: int
    max_attempts: int

    @property
    def threads(self) -> int:
        """Size of the executor that runs blocking engine calls for all its attempts."""
        return self.max_attempts * THREADS_PER_ATTEMPT + THREADS_BESIDES_ATTEMPTS


def detect_gpus() -> list[str]:
    """GPU indices NVML reports (nvidia-ml-py); none without a driver."""
    try:
        import pynvml  # type: ignore[import-untyped]
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        logger.info("no NVIDIA driver found (%s): this worker offers no GPUs", err)
        return []
    try:
        return [str(index) for index in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()


def detect_cpus() -> float:
    try:
        return float(len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return float(os.cpu_count() or 1)


def detect_memory_bytes() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def inventory_of(settings: Settings) -> Inventory:
    """The inventory WORKER_GPUS, WORKER_CPUS and WORKER_MEMORY give, else what is detected."""
    gpus = settings.worker_gpus if settings.worker_gpus is not None else detect_gpus()
    cpus = settings.worker_cpus or detect_cpus()
    memory = settings.worker_memory_bytes or detect_memory_bytes()
    # One attempt per GPU (a GPU run leases at least one), plus four per CPU for runs that
    # reserve no GPU: most of those wait on I/O or share their cores, and runs that reserve
    # CPUs are bounded by admission anyway.
    # GPU attempts are bounded by their leases; the rest mostly wait on the engine.
    max_attempts = settings.worker_max_attempts or len(gpus) + 24 * max(1, int(cpus))
    return Inventory(
        name=settings.worker_name,
        pool=settings.task_queue,
        task_queue=settings.worker_task_queue,
        gpus=list(gpus),
        cpus=cpus,
        memory_bytes=memory,
        max_attempts=max_attempts,
    )
