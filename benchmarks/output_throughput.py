"""Output throughput: how fast an attempt's output reaches its log file, against `docker logs`.

For one finished container that printed ``--megabytes`` of output (lines of ``--line-bytes``),
it times, in the same run and alternately:

* the baseline: ``docker logs CONTAINER > file`` (the docker CLI writing the log to a file);
* the orchestrator: ``follow_output`` over ``DockerRuntime.stream_output`` into a bounded log
  (line splitting, protocol marks, the offset file), as the attempt activity does.

It prints both medians in MB/s and the throughput ratio (orchestrator / baseline; goal at least
0.5). Needs a Docker engine and /usr/bin/busybox. Usage:
``.venv/bin/python benchmarks/output_throughput.py --megabytes 256 --repeat 5``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from activities.output_log import follow_output
from core.settings import LogLimits
from runtimes.base import ContainerSpec
from runtimes.docker import DockerRuntime

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_overhead import IMAGE, build_image  # noqa: E402


def baseline(name: str, path: Path) -> float:
    start = time.perf_counter()
    with open(path, "wb") as out:
        subprocess.run(["docker", "logs", name], stdout=out, check=True, timeout=600)
    return time.perf_counter() - start


async def orchestrated(runtime: DockerRuntime, name: str, path: Path, limits: LogLimits) -> float:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".offset").unlink(missing_ok=True)
    start = time.perf_counter()
    await follow_output(runtime.stream_output(name), path, limits, _ignore)
    return time.perf_counter() - start


async def _ignore(_line: bytes) -> None:
    return None


async def main(megabytes: int, line_bytes: int, repeat: int) -> None:
    build_image()
    runtime = DockerRuntime(network_mode="none", pull_policy="never")
    total = megabytes * 1024 * 1024
    # Lines of (line_bytes - 1) 'x' and a newline: the shape of chatty training logs.
    script = f"head -c {total} /dev/zero | tr '\\0' x | fold -w {line_bytes - 1}"
    spec = ContainerSpec(
        name=f"orch-bench-{uuid.uuid4().hex[:8]}",
        job_id="train-00000000",
        run_id="bench",
        attempt=1,
        image=IMAGE,
        command=["sh", "-c", script],
    )
    await runtime.start(spec)
    try:
        while await runtime.wait(spec.name, 5) is None:
            pass
        limits = LogLimits(max_bytes=2 * total + (1 << 20), max_line=64 * 1024)
        ours, theirs = [], []
        with tempfile.TemporaryDirectory() as folder:
            for _ in range(repeat):
                theirs.append(baseline(spec.name, Path(folder) / "docker.log"))
                ours.append(
                    await orchestrated(runtime, spec.name, Path(folder) / "ours.log", limits)
                )
            size = (Path(folder) / "docker.log").stat().st_size / 1e6
    finally:
        await runtime.remove(spec.name)
    base, mine = statistics.median(theirs), statistics.median(ours)
    print(f"output: {size:.0f} MB in lines of {line_bytes} bytes, median of {repeat}")  # noqa: T201
    print(f"docker logs > file:   {size / base:8.1f} MB/s ({base:.2f} s)")  # noqa: T201
    print(f"orchestrator follow:  {size / mine:8.1f} MB/s ({mine:.2f} s)")  # noqa: T201
    print(f"throughput ratio:     {base / mine:8.2f}x (goal >= 0.5)")  # noqa: T201


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--line-bytes", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.megabytes, options.line_bytes, options.repeat))
