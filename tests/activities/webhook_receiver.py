"""A user's webhook receiver for the tests: it runs the verification snippet of the docs.

The snippet of docs/notifications.md runs as a user would paste it (signature, 5-minute
timestamp window, event id); the receiver deduplicates on the event id as the docs say, and can
fail, hang or stand still in time as a test asks.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
SECRET = "whsec-test-4f1d9a0c7e"
TOKEN = "hooks/T0KEN-in-the-path-77aa"
ACCEPTED, DUPLICATE, FAILED = "accepted", "duplicate", "failed (500)"


def docs_verifier() -> Callable[..., dict[str, Any]]:
    """``verify_webhook`` from the docs' Python example, run as written (its own ``time``)."""
    blocks = re.findall(r"^```python\n(.*?)^```", DOCS.read_text(), re.M | re.S)
    [snippet] = [block for block in blocks if "def verify_webhook(" in block]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, str(DOCS), "exec"), namespace)
    verify: Callable[..., dict[str, Any]] = namespace["verify_webhook"]
    return verify


@dataclass
class Received:
    """One request as it arrived, and what the receiver made of it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    verdict: str = ""


class Receiver(ThreadingHTTPServer):
    """A user's webhook endpoint: verifies, answers 401 to what fails, deduplicates."""

    def __init__(self, secret: str) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.secret = secret.encode()
        self.verify = docs_verifier()
        self.requests: list[Received] = []
        self.events: list[dict[str, Any]] = []  # handled: verified, and new
        self.handled: set[str] = set()
        self.fail_next = 0  # answer 500 (after verifying) this many times
        self.hang_seconds = 0.0
        self.release = threading.Event()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{TOKEN}"

    def verdicts(self) -> list[str]:
        return [request.verdict for request in self.requests]


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        receiver = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = Received(self.path, dict(self.headers.items()), body, time.time())
        with receiver.lock:
            receiver.requests.append(request)
        if receiver.hang_seconds and receiver.release.wait(receiver.hang_seconds):
            return  # the test is over
        try:
            event = receiver.verify(receiver.secret, self.headers, body)
        except ValueError as err:
            request.verdict = str(err)
            self._answer(401, b"")
            return
        with receiver.lock:
            if receiver.fail_next:
                receiver.fail_next -= 1
                request.verdict = FAILED
            elif event["event_id"] in receiver.handled:
                request.verdict = DUPLICATE
            else:
                receiver.handled.add(event["event_id"])
                receiver.events.append(event)
                request.verdict = ACCEPTED
        if request.verdict == FAILED:
            # Echo what was asked for, as some servers do: it must not reach our records.
            self._answer(500, f"cannot handle {self.path} now".encode())
        else:
            self._answer(200, b"")

    def _answer(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LaterClock:
    """Stands in for the ``time`` module of the docs' snippet: the receiver's clock, later."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset
