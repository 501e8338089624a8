"""`make run`'s supervisor: a worker or API that dies comes back; Temporal's death stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

DEVSTACK = str(Path(__file__).resolve().parents[1] / "devstack.py")
START_SECONDS = 90.0


def _children(parent: int) -> dict[str, int]:
    """``{"worker" | "api" | "temporal": pid}`` of the supervisor's live children."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) != parent or stat[0] == "Z":
            continue
        if b"worker" in argv:
            found["worker"] = int(entry.name)
        elif b"api" in argv:
            found["api"] = int(entry.name)
        elif b"start-dev" in argv:
            found["temporal"] = int(entry.name)
    return found


def _runs(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _until(check: object, what: str, timeout: float = START_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout:.0f} s")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    api_port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "TEMPORAL_UI_URL": f"http://127.0.0.1:{free_port()}",
        "API_PORT": str(api_port),
        "WORKER_METRICS_PORT": "0",
        "TASK_QUEUE": "tests-devstack",
    }
    log = tmp_path / "devstack.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, DEVSTACK],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            process_group=0,
        )
    try:
        yield proc, f"http://127.0.0.1:{api_port}", log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_a_killed_worker_and_api_come_back_and_ctrl_c_stops_all(
    stack: tuple[subprocess.Popen[str], str, Path],
) -> None:
    proc, url, log = stack
    _until(lambda: _healthy(url), "the API answers")
    first = _children(proc.pid)
    assert {"worker", "api", "temporal"} <= first.keys(), first

    os.kill(first["worker"], signal.SIGKILL)
    _until(
        lambda: _children(proc.pid).get("worker") not in (None, first["worker"]),
        "a new worker is started",
    )
    os.kill(first["api"], signal.SIGKILL)
    _until(
        lambda: _children(proc.pid).get("api") not in (None, first["api"]) and _healthy(url),
        "a new API answers",
    )
    assert proc.poll() is None, "the supervisor kept running"
    text = log.read_text()
    assert "worker exited with code -9; restarting it in 1 s" in text
    assert "API exited with code -9; restarting it in 1 s" in text

    last = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert not [pid for pid in last.values() if _runs(pid)], "a child outlived the supervisor"


def test_temporal_dying_stops_the_stack(stack: tuple[subprocess.Popen[str], str, Path]) -> None:
    proc, url, log = stack
    _until(lambda: _healthy(url), "the API answers")
    children = _children(proc.pid)
    os.kill(children["temporal"], signal.SIGKILL)
    assert proc.wait(timeout=60) == 1
    assert "Temporal dev server exited" in log.read_text()
    assert not [pid for pid in children.values() if _runs(pid)], "a child outlived the stack"
