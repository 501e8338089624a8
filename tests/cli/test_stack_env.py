"""The CLI run with no flags from the directory of a stack: it finds the API through ``.env``.

The API runs on a port other than the default (the suite's live servers pick a free one); the
``.env`` written next to the CLI names it, as the stack's own file would.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.cli.conftest import API_KEY
from tests.cli.test_cli import error_line, orchestrator
from tests.conftest import free_port, unique_name


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None and port != 8000, "the stack runs on a port other than the default"
    return port


async def test_the_stacks_env_file_names_the_api(live_url: str, tmp_path: Path) -> None:
    name = unique_name("cli-dotenv")
    created = await orchestrator(
        "jobs", "create", "--name", name, "--image", "trainer:1", "--schedule", "0 3 1 1 *",
        "--json", "--", "python", "train.py",
        url=live_url,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    job_id = json.loads(created.stdout)["job_id"]
    # As `make run` reads it: the API listens on every interface, the CLI connects locally.
    (tmp_path / ".env").write_text(f"API_HOST=0.0.0.0\nAPI_PORT={port_of(live_url)}\n")
    try:
        listed = await orchestrator("jobs", "list", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert any(job_id in line and name in line for line in listed.stdout.splitlines())
        # ORCHESTRATOR_URL still wins over the file.
        elsewhere = f"http://127.0.0.1:{free_port()}"
        ignored = await orchestrator(
            "jobs", "list", cwd=tmp_path, env={"ORCHESTRATOR_URL": elsewhere}
        )
        assert error_line(ignored) == f"error: cannot reach the API at {elsewhere}"
    finally:
        deleted = await orchestrator("jobs", "delete", job_id, "--yes", cwd=tmp_path)
        assert deleted.returncode == 0, deleted.stderr


async def test_the_api_key_comes_from_the_env_file_too(auth_url: str, tmp_path: Path) -> None:
    stack = f"ENABLE_API_AUTH=true\nAPI_HOST=::\nAPI_PORT={port_of(auth_url)}\n"
    (tmp_path / ".env").write_text(stack)
    denied = await orchestrator("jobs", "list", cwd=tmp_path)
    assert error_line(denied).startswith("error: 401 AuthenticationError: ")

    (tmp_path / ".env").write_text(stack + f"API_KEY={API_KEY}\n")
    listed = await orchestrator("jobs", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "jobs" in json.loads(listed.stdout)


class _HeaderRecorder(ThreadingHTTPServer):
    """Any other server: answers GET /jobs with an empty page and keeps the headers it got."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.headers: list[dict[str, str]] = []


class _RecordingHandler(BaseHTTPRequestHandler):
    server: _HeaderRecorder

    def do_GET(self) -> None:
        self.server.headers.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps({"jobs": [], "total": 0, "page": 1, "page_size": 50}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def test_the_stacks_key_never_goes_to_another_url(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("API_PORT=8123\nAPI_KEY=key-of-this-stack\n")
    server = _HeaderRecorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        listed = await orchestrator("jobs", "list", cwd=tmp_path, env={"ORCHESTRATOR_URL": url})
        assert listed.returncode == 0, listed.stderr
        assert "0 jobs" in listed.stdout
    finally:
        server.shutdown()
        server.server_close()
    [headers] = server.headers
    assert "x-api-key" not in headers


async def test_a_bad_port_in_the_env_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("API_PORT=eighty\n")
    result = await orchestrator("jobs", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert "API_PORT in .env is not a port number: 'eighty'" in result.stderr
