"""An attempt's output: split once, kept within bounds, resumed after a reattach, never leaked."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from activities.output_log import ELIDED_MARK, BoundedLog, LineSplitter, follow_output
from core.settings import LogLimits
from runtimes.base import ContainerSpec
from runtimes.docker import DockerRuntime
from store.log_files import last_lines_of, tail_of_attempts


def test_a_line_without_newline_is_split_as_it_grows() -> None:
    splitter = LineSplitter(max_line=1000)
    pieces = []
    for _ in range(640):  # 64,000,000 bytes in 100,000-byte chunks, no newline
        pieces += splitter.feed(b"x" * 100_000)
        # Only the unfinished piece is held back, never the whole line.
        assert splitter.pending <= 1000
    assert len(pieces) == 63_999 and all(split for _, split in pieces)
    assert {len(piece) for piece, _ in pieces} == {1000}
    assert splitter.feed(b"tail\nnext") == [(b"x" * 1000, True), (b"tail", False)]
    assert splitter.rest() == b"next"


def test_lines_across_chunks_come_out_whole() -> None:
    splitter = LineSplitter(max_line=64)
    out = splitter.feed(b"PROG") + splitter.feed(b'RESS {"step": 1}\nab') + splitter.feed(b"c\n")
    assert out == [(b'PROGRESS {"step": 1}', False), (b"abc", False)]


def test_the_log_keeps_its_head_and_newest_part_within_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "attempt-1.log"
    log = BoundedLog(path, max_bytes=10_000, max_line=100)
    assert log.open() == 0
    consumed = 0
    for number in range(5_000):
        line = f"line {number}".encode()
        consumed += len(line) + 1
        log.write_line(line, split=False, consumed=consumed)
        assert path.stat().st_size <= 10_000 + len(ELIDED_MARK) + 101
    log.close()
    text = path.read_bytes()
    head, marker, newest = text.partition(ELIDED_MARK)
    assert marker and head.startswith(b"line 0\nline 1\n")
    assert newest.endswith(b"line 4999\n")
    # A reattached activity resumes the same file where the first left off.
    again = BoundedLog(path, max_bytes=10_000, max_line=100)
    assert again.open() == consumed
    again.write_line(b"after", split=False, consumed=consumed + 6)
    again.close()
    assert path.read_bytes() == text + b"after\n"


def test_tails_are_read_from_the_end(tmp_path: Path) -> None:
    first, second = tmp_path / "attempt-1.log", tmp_path / "attempt-2.log"
    with open(first, "wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # 200 MB of holes: reading it all would show
        handle.seek(0, 2)
        handle.write(b"\nfirst-a\nfirst-b\n")
    second.write_text("second-a\nsecond-b\n")
    assert last_lines_of(first, 2) == ["first-a", "first-b"]
    assert tail_of_attempts([(1, first), (2, second)], 3) == [
        "--- attempt 2 ---",
        "second-a",
        "second-b",
    ]
    assert tail_of_attempts([(1, first), (2, second)], 5) == [
        "first-a",
        "first-b",
        "--- attempt 2 ---",
        "second-a",
        "second-b",
    ]
    assert tail_of_attempts([(2, second)], 1) == ["second-b"]


def _spec(image: str, command: list[str]) -> ContainerSpec:
    job_id = f"train-{uuid.uuid4().hex[:8]}"
    return ContainerSpec(
        name=f"orch-test-{uuid.uuid4().hex[:12]}",
        job_id=job_id,
        run_id=f"{job_id}-run",
        attempt=1,
        image=image,
        command=command,
    )


@pytest.fixture
def runtime() -> DockerRuntime:
    return DockerRuntime(network_mode="none", pull_policy="never")


async def test_a_reattached_follow_resumes_the_log_without_repeating_it(
    runtime: DockerRuntime, busybox_image: str, tmp_path: Path
) -> None:
    spec = _spec(busybox_image, ["sh", "-c", "seq 1 3000; printf 'PROGRESS {\"step\": 3}'"])
    await runtime.start(spec)
    try:
        assert await runtime.wait(spec.name, 30) == 0
        path = tmp_path / "attempt-1.log"
        limits = LogLimits(max_bytes=1 << 20, max_line=1 << 12)
        marked: list[bytes] = []

        async def note(line: bytes) -> None:
            marked.append(line)

        await follow_output(runtime.stream_output(spec.name), path, limits, note)
        once = path.read_bytes()
        assert once.splitlines()[0] == b"1" and once.endswith(b'PROGRESS {"step": 3}')
        assert marked == [b'PROGRESS {"step": 3}']
        # The engine replays the output from its start; the second follow skips it all.
        await follow_output(runtime.stream_output(spec.name), path, limits, note)
        assert path.read_bytes() == once
        assert len(marked) == 1
    finally:
        await runtime.remove(spec.name)


async def _first_chunk(stream: AsyncIterator[bytes]) -> bytes:
    async for chunk in stream:
        return chunk
    return b""


async def test_a_stopped_consumer_ends_the_reading_thread(
    runtime: DockerRuntime, busybox_image: str
) -> None:
    spec = _spec(busybox_image, ["sh", "-c", "echo started; sleep 600"])
    await runtime.start(spec)
    try:
        before = set(threading.enumerate())
        stream = runtime.stream_output(spec.name)
        assert await _first_chunk(stream) == b"started\n"
        readers = [t for t in threading.enumerate() if t not in before]
        assert [t.name for t in readers] == ["output-stream"], "one thread reads the stream"
        # Long enough for the reader to block on a container that prints nothing more.
        await asyncio.sleep(1)
        await stream.aclose()  # type: ignore[attr-defined]
        for _ in range(100):
            if not any(thread.is_alive() for thread in readers):
                break
            await asyncio.sleep(0.1)
        assert not any(thread.is_alive() for thread in readers), "a reader outlived its consumer"
    finally:
        await runtime.remove(spec.name)
