"""Images for Docker containers: the pull policy, and pulls that report their progress.

A pull takes as long as the image and the registry need (minutes for a 10 GB image), so its
caller must be able to show that it is alive and how far it got. The engine streams one JSON
message per layer event; :class:`PullProgress` folds them into a small summary whose size does
not grow with the image.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound

from runtimes.base import ImageUnavailableError, InvalidSpecError, ProgressReport

PullPolicy = Literal["if-not-present", "always", "never"]

# Images have tens of layers (the engine refuses more than about 125); a stream naming more
# is summed up without the extra ones.
_MAX_LAYERS = 1000
_MAX_TEXT = 500
_LAYER_DONE = ("Pull complete", "Already exists")


class PullProgress:
    """What a pull has done so far: layers done out of those announced, bytes downloaded."""

    def __init__(self) -> None:
        # layer id -> (bytes downloaded, size), sizes as the engine reports them
        self._layers: dict[str, tuple[int, int]] = {}
        self._done: set[str] = set()
        self._status = ""

    def observe(self, message: dict[str, Any]) -> None:
        """Take one message of the engine's pull stream into account."""
        status = str(message.get("status") or "")
        layer = message.get("id")
        if status:
            self._status = status[:_MAX_TEXT]
        # "Pulling from <repository>" carries the tag as its id, not a layer.
        if not isinstance(layer, str) or not status or status.startswith("Pulling from"):
            return
        if layer not in self._layers and len(self._layers) >= _MAX_LAYERS:
            return
        downloaded, size = self._layers.get(layer, (0, 0))
        detail = message.get("progressDetail") or {}
        if status == "Downloading":
            size = int(detail.get("total") or size)
            downloaded = int(detail.get("current") or downloaded)
        elif status == "Download complete":
            downloaded = size
        elif status in _LAYER_DONE:
            self._done.add(layer)
        self._layers[layer] = (downloaded, size)

    def summary(self) -> dict[str, Any]:
        """A bounded summary, fit for a heartbeat or a log line."""
        return {
            "layers_done": len(self._done),
            "layers_total": len(self._layers),
            "downloaded_bytes": sum(downloaded for downloaded, _ in self._layers.values()),
            "total_bytes": sum(size for _, size in self._layers.values()),
            "status": self._status,
        }


def prepare_image(
    client: docker.DockerClient,
    image: str,
    policy: PullPolicy,
    on_progress: ProgressReport,
    stop: threading.Event,
) -> bool:
    """Make ``image`` present on the engine as ``policy`` says; True if it was pulled.

    Blocking: run it on a thread. Setting ``stop`` abandons the pull at the engine's next
    message (the engine sends them while it downloads).

    Raises:
        ImageUnavailableError: The image is missing and could not be pulled.
        InvalidSpecError: The image name is not a valid reference.
    """
    if policy != "always":
        try:
            client.images.get(image)
            return False
        except ImageNotFound:
            if policy == "never":
                raise ImageUnavailableError(
                    f"image {image} not found locally and the pull policy is 'never'"
                ) from None
        except APIError as exc:
            if exc.is_client_error():
                raise InvalidSpecError(f"invalid image name {image!r}: {_why(exc)}") from exc
            raise
    _pull(client, image, on_progress, stop)
    return True


def _pull(
    client: docker.DockerClient,
    image: str,
    on_progress: ProgressReport,
    stop: threading.Event,
) -> None:
    progress = PullProgress()
    try:
        # The low-level call streams per-layer progress; images.pull would only return at the end.
        for message in client.api.pull(image, stream=True, decode=True):
            if stop.is_set():
                return
            if message.get("error"):
                why = str(message["error"])[:_MAX_TEXT]
                raise ImageUnavailableError(f"pull of image {image} failed: {why}")
            progress.observe(message)
            on_progress(progress.summary())
    except APIError as exc:
        # 400 is the engine refusing the reference itself; anything else (no such tag or
        # repository, no access, registry down) may be different on the next try.
        if exc.status_code == 400:
            raise InvalidSpecError(f"invalid image name {image!r}: {_why(exc)}") from exc
        raise ImageUnavailableError(
            f"image {image} not found locally and pull failed: {_why(exc)}"
        ) from exc
    except (DockerException, requests.RequestException) as exc:
        raise ImageUnavailableError(
            f"image {image} not found locally and pull failed: {_why(exc)}"
        ) from exc


def _why(exc: Exception) -> str:
    if isinstance(exc, APIError) and exc.explanation:
        return str(exc.explanation)[:_MAX_TEXT]
    return str(exc)[:_MAX_TEXT]
