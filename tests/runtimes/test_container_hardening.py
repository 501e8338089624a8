"""Every training container is hardened, whatever its image asks (CONTAINER_* settings)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import docker
import pytest

from runtimes.base import InvalidSpecError
from runtimes.docker import DockerRuntime
from runtimes.docker_options import Hardening
from tests.runtimes.test_docker_runtime import SpecFactory, client, job_id, make_spec, sh

__all__ = ["client", "job_id", "make_spec"]  # fixtures shared with the runtime's own tests


async def test_no_capabilities_no_new_privileges_pids_logs_init(
    make_spec: SpecFactory, client: docker.DockerClient, tmp_path: Path
) -> None:
    runtime = DockerRuntime(network_mode="none")
    spec = make_spec(
        sh("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; echo pid1=$(cat /proc/1/comm)"),
        checkpoint_host_dir=tmp_path / "ckpt",
        checkpoint_mount_path="/checkpoints/hardened",
    )
    await runtime.start(spec)
    assert await runtime.wait(spec.name, 30) == 0
    output = await runtime.logs(spec.name)
    assert "CapEff:\t0000000000000000" in output
    assert "NoNewPrivs:\t1" in output
    assert "pid1=sh" not in output  # Docker's init is PID 1, the command its child
    host = client.containers.get(spec.name).attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["PidsLimit"] == 4096
    assert host["Init"] is True
    log_config = {"max-size": "1g", "max-file": "2"}
    assert host["LogConfig"] == {"Type": "json-file", "Config": log_config}
    [mount] = host["Mounts"]
    assert (mount["Type"], mount["Source"]) == ("bind", str(tmp_path / "ckpt"))
    assert (mount["Target"], mount.get("ReadOnly", False)) == ("/checkpoints/hardened", False)


async def test_init_lets_a_shell_stop_at_once(make_spec: SpecFactory) -> None:
    # A shell as PID 1 ignores SIGTERM: without init every cancel waits out the grace period.
    runtime = DockerRuntime(network_mode="none")
    spec = make_spec(sh("sleep 60; echo never"))
    await runtime.start(spec)
    await runtime.wait(spec.name, 1)
    began = time.monotonic()
    await runtime.stop(spec.name, 10)
    assert time.monotonic() - began < 5


async def test_pids_limit_and_cap_add(make_spec: SpecFactory, client: docker.DockerClient) -> None:
    runtime = DockerRuntime(
        network_mode="none", hardening=Hardening(pids_limit=16, cap_add=("NET_BIND_SERVICE",))
    )
    spec = make_spec(sh("for i in $(seq 40); do sleep 3 & done 2>&1; wait; echo done"))
    await runtime.start(spec)
    await runtime.wait(spec.name, 30)
    assert "can't fork" in await runtime.logs(spec.name)
    host = client.containers.get(spec.name).attrs["HostConfig"]
    assert host["PidsLimit"] == 16 and host["CapAdd"] == ["NET_BIND_SERVICE"]


async def test_container_user_owns_the_checkpoint_directory(
    make_spec: SpecFactory, tmp_path: Path
) -> None:
    runtime = DockerRuntime(network_mode="none", hardening=Hardening(user="4321:4322"))
    host_dir = tmp_path / "user-ckpt"
    spec = make_spec(
        sh("id -u; id -g; echo saved > /ckpt/ckpt-1.txt"),
        checkpoint_host_dir=host_dir,
        checkpoint_mount_path="/ckpt",
    )
    await runtime.start(spec)
    assert await runtime.wait(spec.name, 30) == 0
    assert (await runtime.logs(spec.name)).split() == ["4321", "4322"]
    assert (host_dir / "ckpt-1.txt").read_text() == "saved\n"
    assert (os.stat(host_dir).st_uid, os.stat(host_dir).st_gid) == (4321, 4322)


async def test_a_checkpoint_directory_reached_through_a_link_is_not_mounted(
    make_spec: SpecFactory, tmp_path: Path
) -> None:
    # Another job's container replaced a directory above this job's with a link to /etc.
    (tmp_path / "shared").symlink_to("/etc")
    runtime = DockerRuntime(network_mode="none")
    spec = make_spec(
        ["true"], checkpoint_host_dir=tmp_path / "shared" / "job", checkpoint_mount_path="/c"
    )
    with pytest.raises(InvalidSpecError, match="symbolic link"):
        await runtime.start(spec)
    assert not Path("/etc/job").exists()  # not even created through the link
