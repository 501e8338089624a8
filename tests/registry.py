"""A real image registry on loopback for pull tests: Debian's ``docker-registry``.

The Docker engine treats registries on 127.0.0.0/8 as insecure-allowed, so plain HTTP works
without touching the engine's configuration. Images pushed here are built for the test (a
random payload makes every layer new to the engine), so a pull really downloads them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
from docker.errors import ImageNotFound

from tests.conftest import free_port

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
REPOSITORY = "orch/busybox"


class LocalRegistry:
    """A registry at ``address`` (``127.0.0.1:<port>``) storing under a temporary directory."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.pushed: list[str] = []

    def reference(self, tag: str) -> str:
        return f"{self.address}/{REPOSITORY}:{tag}"

    def push_busybox(self, payload_bytes: int = 1024 * 1024) -> str:
        """Build a busybox image of its own, push it, remove it locally; its reference."""
        reference = self.reference(uuid.uuid4().hex[:10])
        client = docker.from_env()
        try:
            with tempfile.TemporaryDirectory() as context:
                shutil.copy("/usr/bin/busybox", Path(context) / "busybox")
                (Path(context) / "payload").write_bytes(os.urandom(payload_bytes))
                (Path(context) / "Dockerfile").write_text(
                    "FROM scratch\n"
                    "COPY payload /payload\n"
                    "COPY busybox /bin/busybox\n"
                    'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
                    "ENV PATH=/bin\n"
                )
                client.images.build(path=context, tag=reference, rm=True)
            self.pushed.append(reference)
            repository, tag = reference.rsplit(":", 1)
            for message in client.api.push(repository, tag=tag, stream=True, decode=True):
                assert "error" not in message, message
            client.images.remove(reference, force=True)
        finally:
            client.close()
        return reference

    def remove_local(self, reference: str) -> None:
        client = docker.from_env()
        try:
            with contextlib.suppress(ImageNotFound):
                client.images.remove(reference, force=True)
        finally:
            client.close()


@contextlib.contextmanager
def local_registry() -> Iterator[LocalRegistry]:
    """Run ``docker-registry serve`` on a free loopback port until the block ends."""
    assert Path(REGISTRY_BINARY).exists(), (
        "the image-pull tests need Debian's docker-registry: apt-get install docker-registry"
    )
    root = Path(tempfile.mkdtemp(prefix="orchestrator-registry-"))
    address = f"127.0.0.1:{free_port()}"
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: {address}\n"
    )
    with open(root / "registry.log", "wb") as log:
        process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    registry = LocalRegistry(address)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (root / "registry.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://{address}/v2/", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the registry did not answer within 30 s"
            time.sleep(0.1)
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for reference in registry.pushed:
            registry.remove_local(reference)
        shutil.rmtree(root, ignore_errors=True)
