"""Which container start failures are the command's (permanent) and which the host's (retried).

Every text below is what a real engine answered (``docker run``, the explanation of the API
error): the first group from this machine's engine (20.10 with runc 1.1), the others from
the engines and runc versions people run, as reported in their issue trackers. "OCI runtime
create failed" is in nearly all of them, for a missing executable and for a mount that lost
a race alike; only the exec of the container's process failing says the command is bad.
"""

from __future__ import annotations

import pytest

from runtimes.docker_errors import is_bad_command

BAD_COMMANDS = [
    # Docker 20.10.24, runc 1.1.5 (this machine).
    "failed to create shim task: OCI runtime create failed: runc create failed: unable to start "
    'container process: exec: "/no/such/trainer": stat /no/such/trainer: no such file or '
    "directory: unknown",
    "failed to create shim task: OCI runtime create failed: runc create failed: unable to start "
    'container process: exec: "nosuchtrainer": executable file not found in $PATH: unknown',
    "failed to create shim task: OCI runtime create failed: runc create failed: unable to start "
    'container process: exec: "/bin": permission denied: unknown',
    # Docker 24-27 with runc 1.1/1.2: "error during container init" before the exec.
    "failed to create task for container: failed to create shim task: OCI runtime create "
    "failed: runc create failed: unable to start container process: error during container "
    'init: exec: "python": executable file not found in $PATH: unknown',
    # Docker 19.03 / 20.10 with runc 1.0-rc: the cause quoted, quotes escaped.
    "OCI runtime create failed: container_linux.go:349: starting container process caused "
    '"exec: \\"train.sh\\": executable file not found in $PATH": unknown',
    "OCI runtime create failed: container_linux.go:380: starting container process caused: "
    'exec: "/app/train": permission denied: unknown',
]

HOST_TROUBLE = [
    # Docker 20.10.24 (this machine): a bind mount onto a path of another type.
    "failed to create shim task: OCI runtime create failed: runc create failed: unable to start "
    'container process: error during container init: error mounting "/etc/hostname" to rootfs '
    'at "/bin": mount /etc/hostname:/bin (via /proc/self/fd/6), flags: 0x5000: not a '
    "directory: unknown: Are you trying to mount a directory onto a file (or vice-versa)? "
    "Check if the specified host path exists and is the expected type",
    # A mount source that vanished between create and start (kubelet, autofs, NFS).
    "OCI runtime create failed: container_linux.go:367: starting container process caused: "
    "process_linux.go:495: container init caused: rootfs_linux.go:60: mounting "
    '"/var/lib/kubelet/pods/3f2c/etc-hosts" to rootfs at "/var/lib/docker/overlay2/9a1/merged'
    '/etc/hosts" caused: no such file or directory: unknown',
    # The runtime itself failed: its log was gone before it could be read.
    "OCI runtime create failed: unable to retrieve OCI runtime error (open "
    "/run/containerd/io.containerd.runtime.v2.task/moby/5f0e/log.json: no such file or "
    "directory): runc did not terminate successfully: exit status 2: unknown",
    # cgroups under pressure.
    "failed to create shim task: OCI runtime create failed: runc create failed: unable to start "
    "container process: error during container init: error setting cgroup config for procHooks "
    'process: failed to write "max": write /sys/fs/cgroup/docker/1c2/pids.max: device or '
    "resource busy: unknown",
    "failed to create shim task: OCI runtime create failed: runc create failed: unable to start "
    'container process: error during container init: error mounting "proc" to rootfs at '
    '"/proc": mount proc:/proc (via /proc/self/fd/7), flags: 0xe: device or resource busy: '
    "unknown",
    "failed to create shim task: context deadline exceeded: unknown",
    "driver failed programming external connectivity on endpoint orch-x: Error starting "
    "userland proxy: listen tcp4 0.0.0.0:8080: bind: address already in use",
    "error while creating mount source path '/data/ckpt': mkdir /data: read-only file system",
]


@pytest.mark.parametrize("text", BAD_COMMANDS)
def test_a_command_that_cannot_be_executed_is_permanent(text: str) -> None:
    assert is_bad_command(text)


@pytest.mark.parametrize("text", HOST_TROUBLE)
def test_other_start_failures_are_the_hosts(text: str) -> None:
    assert not is_bad_command(text)
