"""After a unit exits, its output is waited for while it flows, and given up when it stalls."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from activities.output_drain import drain
from activities.output_log import OutputCount, follow_output
from core.settings import LogLimits
from runtimes.base import ContainerSpec
from runtimes.docker import DockerRuntime

LIMITS = LogLimits(max_bytes=1 << 20, max_line=1 << 12)


def _spec(image: str, script: str) -> ContainerSpec:
    job_id = f"train-{uuid.uuid4().hex[:8]}"
    return ContainerSpec(
        name=f"orch-test-{uuid.uuid4().hex[:12]}",
        job_id=job_id,
        run_id=f"{job_id}-run",
        attempt=1,
        image=image,
        command=["sh", "-c", script],
    )


async def test_output_that_keeps_flowing_is_drained_past_one_window(
    busybox_image: str, tmp_path: Path
) -> None:
    runtime = DockerRuntime(network_mode="none", pull_policy="never")
    # 25 lines 0.2 s apart: about 5 s of output, more than two 2-second windows.
    spec = _spec(busybox_image, "for i in $(seq 1 25); do echo line-$i; sleep 0.2; done")
    await runtime.start(spec)
    try:
        path = tmp_path / "attempt-1.log"
        count = OutputCount()
        follow = follow_output(runtime.stream_output(spec.name), path, LIMITS, count=count)
        task = asyncio.create_task(follow)
        assert await drain(task, count, window=2.0)
        assert task.done() and not task.cancelled()
        lines = path.read_bytes().splitlines()
        assert lines == [f"line-{i}".encode() for i in range(1, 26)]
        assert count.bytes == len(path.read_bytes())
    finally:
        await runtime.remove(spec.name)


async def test_output_that_stalls_is_given_up_after_one_silent_window(
    busybox_image: str, tmp_path: Path
) -> None:
    runtime = DockerRuntime(network_mode="none", pull_policy="never")
    spec = _spec(busybox_image, "echo started; sleep 600")
    await runtime.start(spec)
    try:
        path = tmp_path / "attempt-1.log"
        count = OutputCount()
        follow = follow_output(runtime.stream_output(spec.name), path, LIMITS, count=count)
        task = asyncio.create_task(follow)
        assert not await drain(task, count, window=1.0)
        await asyncio.wait([task])
        assert task.cancelled()
        assert count.bytes == len(b"started\n")
        assert path.read_bytes() == b"started\n"
    finally:
        await runtime.remove(spec.name)
