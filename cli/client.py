"""A small synchronous client for the REST API: one method per endpoint, failures as exceptions."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any, cast
from urllib.parse import quote

import httpx

# Creating a job creates its Temporal Schedule too, which can take a few seconds on a busy server.
DEFAULT_TIMEOUT = 30.0
# The API answers a cancel once the run has stopped: after the container's grace period.
CANCEL_TIMEOUT = 120.0


class ApiError(Exception):
    """The API answered with an error: its status code and ``{"detail", "error_type"}`` body."""

    def __init__(self, status_code: int, error_type: str, detail: str) -> None:
        super().__init__(f"{status_code} {error_type}: {detail}")
        self.status_code = status_code
        self.error_type = error_type
        self.detail = detail


class ApiUnreachable(Exception):
    """No HTTP answer at all: nothing listens at the URL, or the connection broke."""


class OrchestratorClient:
    """The orchestrator's REST API, with the API key (if any) sent as ``X-API-Key``."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> OrchestratorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/jobs", json=body)

    def list_jobs(
        self, status: str | None = None, page: int = 1, page_size: int = 50
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"page": page, "page_size": page_size}
        if status is not None:
            params["status_filter"] = status
        return self._json("GET", "/jobs", params=params)

    def list_workers(self) -> dict[str, Any]:
        return self._json("GET", "/workers")

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", _job_path(job_id))

    def update_job(self, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("PUT", _job_path(job_id), json=body)

    def delete_job(self, job_id: str) -> None:
        self._request("DELETE", _job_path(job_id))

    def retry_job(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"{_job_path(job_id)}/retry")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        timeout = max(CANCEL_TIMEOUT, self._http.timeout.read or 0.0)
        return self._json("POST", f"{_job_path(job_id)}/cancel", timeout=timeout)

    def logs(self, job_id: str, tail: int | None = None) -> bytes:
        """The latest run's output so far (the last ``tail`` lines)."""
        return self._request("GET", f"{_job_path(job_id)}/logs", params=_tail(tail)).content

    def follow_logs(self, job_id: str, tail: int | None = None) -> Iterator[bytes]:
        """The latest run's output, chunk by chunk as the server sends it, until the run ends."""
        params = {**_tail(tail), "follow": "true"}
        # A quiet trainer may print nothing for a long time: only the connect step may time out.
        timeout = httpx.Timeout(None, connect=self._http.timeout.connect)
        try:
            with self._http.stream(
                "GET", f"{_job_path(job_id)}/logs", params=params, timeout=timeout
            ) as response:
                if response.is_error:
                    response.read()
                    raise _api_error(response)
                yield from response.iter_bytes()
        except httpx.TransportError as err:
            raise self._unreachable(err) from err

    def run_metrics(self, job_id: str, run_id: str) -> dict[str, Any]:
        """A run's metric history: one series per name, ordered by step."""
        return self._json("GET", f"{_job_path(job_id)}/runs/{quote(run_id, safe='')}/metrics")

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self._request(method, path, **kwargs).json())

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise self._unreachable(err) from err
        if response.is_error:
            raise _api_error(response)
        return response

    def _unreachable(self, err: httpx.TransportError) -> ApiUnreachable:
        if isinstance(err, httpx.ConnectError | httpx.ConnectTimeout):
            return ApiUnreachable(f"cannot reach the API at {self.url}")
        if isinstance(err, httpx.TimeoutException):
            return ApiUnreachable(f"the API at {self.url} did not answer in time")
        return ApiUnreachable(f"the connection to the API at {self.url} failed ({err})")


def _job_path(job_id: str) -> str:
    # Quoted so that an id typed with a slash cannot address another endpoint.
    return f"/jobs/{quote(job_id, safe='')}"


def _tail(tail: int | None) -> dict[str, Any]:
    return {} if tail is None else {"tail": tail}


def _api_error(response: httpx.Response) -> ApiError:
    """The API's own error body, or what a proxy or other server in front of it said."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return ApiError(response.status_code, str(body.get("error_type", "Error")), body["detail"])
    text = " ".join(response.text.split())[:200] or response.reason_phrase
    return ApiError(response.status_code, "HTTPError", text)
