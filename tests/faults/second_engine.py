"""A Docker engine of the test's own, to be restarted under a running trainer.

The suite's engine is shared by every test and by other work on the machine, so an engine
restart is tried on a second ``dockerd``: its own socket, data root, exec root, pid file,
containerd namespace and bridge device, with ``--iptables=false --ip-masq=false`` (nothing
of the host's firewall is touched) and ``--live-restore=false`` (a restart kills its
containers, which is the case under test). Its bridge is a fresh device on a private /24 no
interface of the host uses: an engine started with ``--bridge none`` removes the host's
``docker0``, which would break every container on the shared engine. Training containers
run with ``network_mode="none"``, so nothing leaves the host.

It needs root (``dockerd`` and ``ip link``), as CI runs; without it, the test fails saying so.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import docker
from docker.errors import DockerException

START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0


class SecondEngine:
    """One ``dockerd`` with its own directories and bridge; :meth:`cleanup` undoes it all."""

    def __init__(self, *, live_restore: bool = False) -> None:
        # True for a simulated host (tests/faults/test_two_hosts.py): its containers outlive
        # a frozen or stopped engine, as on a real host that drops off the network.
        self.live_restore = live_restore
        # Short: containerd's sockets live under the exec root (108 bytes per socket path).
        self.root = Path(tempfile.mkdtemp(prefix="oe-", dir="/tmp"))
        self.url = f"unix://{self.root / 'docker.sock'}"
        self.bridge = f"br-ot{os.urandom(3).hex()}"
        self._bridge_made = False
        self._process: subprocess.Popen[bytes] | None = None
        self._log = self.root / "dockerd.log"

    def _require(self) -> str:
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        if os.geteuid() != 0:
            raise RuntimeError("a second Docker engine needs root (dockerd, ip link)")
        if not Path(dockerd).exists():
            raise RuntimeError("dockerd is not installed (apt-get install docker.io)")
        return dockerd

    def _make_bridge(self) -> None:
        used = subprocess.run(
            ["ip", "-4", "-o", "addr", "show"], check=True, capture_output=True, text=True
        ).stdout
        free = [n for n in range(200, 250) if f" 10.213.{n}." not in used]
        if not free:
            raise RuntimeError("no free 10.213.x.0/24 for the test bridge")
        subnet = random.choice(free)
        subprocess.run(["ip", "link", "add", "name", self.bridge, "type", "bridge"], check=True)
        self._bridge_made = True
        subprocess.run(
            ["ip", "addr", "add", f"10.213.{subnet}.1/24", "dev", self.bridge], check=True
        )
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)

    def start(self) -> None:
        """Start the engine (again, on the same directories) and wait until it answers."""
        dockerd = self._require()
        if not self._bridge_made:
            self._make_bridge()
        self._forget_dead_containerd()
        with open(self._log, "ab") as log:
            self._process = subprocess.Popen(
                [
                    dockerd,
                    f"--host={self.url}",
                    f"--data-root={self.root / 'data'}",
                    f"--exec-root={self.root / 'exec'}",
                    f"--pidfile={self.root / 'docker.pid'}",
                    f"--bridge={self.bridge}",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--ip-masq=false",
                    f"--live-restore={'true' if self.live_restore else 'false'}",
                    "--containerd-namespace=orchtest",
                    "--containerd-plugins-namespace=orchtest-plugins",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self._process.returncode}: {self.log()}")
            try:
                client = docker.DockerClient(base_url=self.url, timeout=5)
                client.ping()
                client.close()
                return
            except (DockerException, OSError) as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dockerd did not answer: {err}; {self.log()}") from err
            time.sleep(0.3)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the engine like ``systemctl stop docker`` (SIGTERM) and wait for its exit."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(sig)
        try:
            self._process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(STOP_TIMEOUT)

    def freeze(self) -> None:
        """SIGSTOP the engine (its containers, under their shims, keep running)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def _forget_dead_containerd(self) -> None:
        """Remove the pid file of a containerd that died with a crashed dockerd.

        Where PID 1 does not reap orphans (many containers, some CI runners), the dead
        containerd stays a zombie; dockerd takes it for alive and waits for it in vain.
        """
        pid_file = self.root / "exec" / "containerd" / "containerd.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if _process_state(pid) in (None, "Z"):
            pid_file.unlink(missing_ok=True)

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=60)

    def load_image(self, tag: str) -> None:
        """Copy an image from the suite's engine (``docker save | docker load``)."""
        main = docker.from_env()
        own = self.client()
        try:
            own.images.load(b"".join(main.images.get(tag).save(named=tag)))
        finally:
            main.close()
            own.close()

    def log(self, lines: int = 30) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def cleanup(self) -> None:
        """Stop the engine, remove its directories and its bridge, whatever state they are in."""
        self.thaw()
        with contextlib.suppress(Exception):
            self.stop()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(STOP_TIMEOUT)
        # What a crashed engine left running: its containerd, shims and their containers.
        for pid in _processes_under(str(self.root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Whatever the engine left mounted under its directories (overlays, netns files).
        with open("/proc/mounts", encoding="utf-8") as mounts:
            points = [line.split()[1] for line in mounts if f"{self.root}/" in line.split()[1]]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        if self._bridge_made:
            subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)
            self._bridge_made = False


def _process_state(pid: int) -> str | None:
    """The state letter of a process (``Z`` for a zombie), None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _processes_under(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker``, with all their descendants."""
    parents: dict[int, int] = {}
    roots = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        if marker in argv:
            roots.append(int(entry.name))
    found = set(roots)
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        grew = bool(children)
        found |= children
    return sorted(found)
