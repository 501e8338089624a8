"""The activity that makes an attempt's image ready on a worker, and names that worker's queue.

A pull can take longer than any sensible timeout (a 10 GB image on a slow link), so it is an
activity of its own that heartbeats with its progress instead of a phase of the training
attempt. It returns the task queue only this worker polls: the workflow runs the attempt
there, on the engine that now holds the image (the worker-specific task queue pattern).
"""

from __future__ import annotations

import time
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.fault_points import pause_at
from activities.heartbeat import Heartbeat, beat_interval
from core.settings import Settings
from runtimes.base import (
    ContainerRuntime,
    ImageUnavailableError,
    InvalidSpecError,
    RuntimeUnavailableError,
)
from workflows.models import (
    IMAGE_UNAVAILABLE,
    INVALID_SPEC,
    PULL_IMAGE,
    RUNTIME_UNAVAILABLE,
    ImageReady,
    PullImageInput,
)


class ImageActivities:
    """Holds the runtime built once by worker.py; pulls go to its engine."""

    def __init__(self, runtime: ContainerRuntime, settings: Settings) -> None:
        self._runtime = runtime
        self._settings = settings

    @activity.defn(name=PULL_IMAGE)
    async def pull_image(self, request: PullImageInput) -> ImageReady:
        """Pull the image as IMAGE_PULL_POLICY says, heartbeating with the pull's progress.

        Returns this worker's own task queue, where the attempt is to run.
        """
        heartbeat = Heartbeat(
            beat_interval(self._settings.poll_interval_seconds),
            {"image": request.image, "attempt": request.attempt, "pull": None},
        )
        async with heartbeat.running():
            await pause_at(self._settings, "pull")
            pulled = await make_image_ready(self._runtime, request.image, heartbeat)
        # The last details say what was done, however fast the pull was.
        activity.heartbeat(heartbeat.details())
        return ImageReady(
            task_queue=self._settings.worker_task_queue,
            worker=self._settings.worker_name,
            pulled=pulled,
        )

    async def ready_here(self, image: str) -> ImageReady | None:
        """This worker's queue if ``image`` can be used here now without a pull, else None.

        Asked by start_run for a run that needs no capacity: its first attempt then skips
        the pull_image round trip (the plan's ``image_ready``).
        """
        if not await self._runtime.image_present(image):
            return None
        return ImageReady(
            task_queue=self._settings.worker_task_queue,
            worker=self._settings.worker_name,
            pulled=False,
        )


async def make_image_ready(runtime: ContainerRuntime, image: str, heartbeat: Heartbeat) -> bool:
    """Make ``image`` ready on ``runtime``; progress goes into ``heartbeat``'s ``pull`` field.

    Raises:
        ApplicationError: ``ImageUnavailable`` (retried, a bounded number of times),
            ``InvalidSpec`` or ``RuntimeUnavailable`` (neither retried).
    """
    try:
        return await prepare_image(runtime, image, heartbeat)
    except RuntimeUnavailableError as err:
        raise ApplicationError(str(err), type=RUNTIME_UNAVAILABLE, non_retryable=True) from err
    except InvalidSpecError as err:
        raise ApplicationError(str(err), type=INVALID_SPEC, non_retryable=True) from err
    except ImageUnavailableError as err:
        raise ApplicationError(str(err), type=IMAGE_UNAVAILABLE) from err


async def prepare_image(runtime: ContainerRuntime, image: str, heartbeat: Heartbeat) -> bool:
    """Pull ``image`` as the policy says, progress in ``heartbeat``; the runtime's errors as is."""
    latest: list[dict[str, Any]] = [{}]
    # Called from the pulling thread: replacing the list's item is atomic, and the heartbeat
    # task reads whichever summary is newest.
    heartbeat.add_source(lambda: {"pull": latest[0] or None})
    began = time.monotonic()
    pulled = await runtime.prepare_image(image, lambda summary: latest.__setitem__(0, summary))
    if pulled:
        summary = latest[0]
        activity.logger.info(
            "pulled image %s: %s/%s layers, %s bytes downloaded in %.1f s",
            image,
            summary.get("layers_done", 0),
            summary.get("layers_total", 0),
            summary.get("downloaded_bytes", 0),
            time.monotonic() - began,
        )
    else:
        activity.logger.info("image %s is present; not pulled", image)
    return pulled
