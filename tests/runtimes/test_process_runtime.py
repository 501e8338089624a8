"""ProcessRuntime with real processes: busybox shells and Python as stand-in trainers."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from runtimes.base import LABEL_JOB_ID, ContainerSpec, InvalidSpecError, unit_name
from runtimes.process import ProcessRuntime

BUSYBOX = "/usr/bin/busybox"
TRAP_TERM = 'trap "echo got-term; exit 3" TERM; while true; do sleep 0.2; done'
IGNORE_TERM = 'trap "" TERM; while true; do sleep 0.2; done'
JOB_ID = "proc-test"

SpecFactory = Callable[..., ContainerSpec]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "units"


@pytest.fixture
async def runtime(state_dir: Path) -> AsyncIterator[ProcessRuntime]:
    runtime = ProcessRuntime(state_dir)
    yield runtime
    # No trainer may outlive its test.
    for name, _, running in await runtime.list_units():
        if running:
            await runtime.remove(name)


@pytest.fixture
def make_spec() -> SpecFactory:
    attempts = iter(range(1, 1000))

    def make(command: list[str], **overrides: object) -> ContainerSpec:
        attempt = next(attempts)
        fields: dict[str, object] = {
            "name": unit_name(JOB_ID, "run:1", attempt),
            "job_id": JOB_ID,
            "run_id": "run:1",
            "attempt": attempt,
            "image": "ignored:latest",
            "command": command,
        }
        fields.update(overrides)
        return ContainerSpec(**fields)  # type: ignore[arg-type]

    return make


def sh(script: str) -> list[str]:
    return [BUSYBOX, "sh", "-c", script]


def pid_of(state_dir: Path, name: str) -> int:
    return int((state_dir / name / "pid").read_text())


def is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def test_exit_codes(runtime: ProcessRuntime, make_spec: SpecFactory) -> None:
    ok = make_spec(sh("echo hello"))
    failing = make_spec([sys.executable, "-c", "raise SystemExit(3)"])
    assert not (await runtime.start(ok)).reattached
    assert not (await runtime.start(failing)).reattached
    assert await runtime.wait(ok.name, 10) == 0
    assert await runtime.wait(failing.name, 10) == 3


async def test_logs_combine_streams_and_tail(
    runtime: ProcessRuntime, make_spec: SpecFactory
) -> None:
    spec = make_spec(
        sh("echo oops >&2; for i in 1 2 3 4; do echo line-$i; done; echo $GREETING"),
        env={"GREETING": "héllo"},
    )
    await runtime.start(spec)
    assert await runtime.wait(spec.name, 10) == 0
    assert (await runtime.logs(spec.name)).splitlines() == [
        "oops",
        "line-1",
        "line-2",
        "line-3",
        "line-4",
        "héllo",
    ]
    assert await runtime.logs(spec.name, tail=2) == "line-4\nhéllo\n"
    assert await runtime.logs(spec.name, tail=0) == ""
    assert len((await runtime.logs(spec.name, tail=100)).splitlines()) == 6


async def test_environment_is_not_inherited(
    runtime: ProcessRuntime, make_spec: SpecFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_SECRET", "do-not-leak")
    spec = make_spec([BUSYBOX, "env"], env={"EPOCHS": "3"})
    await runtime.start(spec)
    assert await runtime.wait(spec.name, 10) == 0
    names = {line.split("=", 1)[0] for line in (await runtime.logs(spec.name)).splitlines()}
    assert "EPOCHS" in names and "PATH" in names
    assert "WORKER_SECRET" not in names
    assert names <= {"EPOCHS", "PATH", "HOME", "LANG"}


async def test_start_twice_while_running_reattaches(
    runtime: ProcessRuntime, make_spec: SpecFactory, state_dir: Path
) -> None:
    spec = make_spec(sh("sleep 30"))
    first, second = await asyncio.gather(runtime.start(spec), runtime.start(spec))
    assert sorted([first.reattached, second.reattached]) == [False, True]
    pid = pid_of(state_dir, spec.name)
    assert (await runtime.start(spec)).reattached
    assert pid_of(state_dir, spec.name) == pid
    assert await runtime.list_units() == [(spec.name, spec.labels, True)]


async def test_exited_unit_is_reaped_through_wait(
    runtime: ProcessRuntime, make_spec: SpecFactory, state_dir: Path
) -> None:
    spec = make_spec(sh("echo once; exit 5"))
    await runtime.start(spec)
    assert await runtime.wait(spec.name, 10) == 5
    assert (await runtime.start(spec)).reattached
    # A zero timeout answers only what is already known: the exit code needs no waiting.
    assert await runtime.wait(spec.name, 0) == 5
    assert await runtime.logs(spec.name) == "once\n"
    assert await runtime.list_units() == [(spec.name, spec.labels, False)]
    await runtime.remove(spec.name)
    assert not (state_dir / spec.name).exists()
    assert await runtime.list_units() == []


async def test_trainer_survives_the_worker_and_a_new_worker_reattaches(
    make_spec: SpecFactory, state_dir: Path
) -> None:
    spec = make_spec(sh("sleep 1; echo done; exit 7"))
    # A real worker process that starts the unit and then dies without any cleanup.
    worker = textwrap.dedent(
        f"""
        import asyncio, os, pathlib
        from runtimes.base import ContainerSpec
        from runtimes.process import ProcessRuntime
        spec = ContainerSpec(name={spec.name!r}, job_id={spec.job_id!r}, run_id="run:1",
                             attempt={spec.attempt}, image="x", command={spec.command!r})
        result = asyncio.run(ProcessRuntime(pathlib.Path({str(state_dir)!r})).start(spec))
        assert not result.reattached
        os.kill(os.getpid(), 9)
        """
    )
    finished = subprocess.run([sys.executable, "-c", worker], timeout=30, check=False)
    assert finished.returncode == -signal.SIGKILL
    assert is_running(pid_of(state_dir, spec.name))

    restarted = ProcessRuntime(state_dir)
    assert (await restarted.start(spec)).reattached
    assert await restarted.wait(spec.name, 10) == 7
    assert await restarted.logs(spec.name) == "done\n"


async def test_trainer_outlives_the_runtime_object(make_spec: SpecFactory, state_dir: Path) -> None:
    spec = make_spec(sh("sleep 1; exit 4"))
    first = ProcessRuntime(state_dir)
    await first.start(spec)
    del first
    gc.collect()
    assert is_running(pid_of(state_dir, spec.name))
    second = ProcessRuntime(state_dir)
    assert (await second.start(spec)).reattached
    assert await second.wait(spec.name, 10) == 4


async def test_lost_supervisor_reports_a_failure_instead_of_hanging(
    runtime: ProcessRuntime, make_spec: SpecFactory, state_dir: Path
) -> None:
    spec = make_spec(sh("sleep 30"))
    await runtime.start(spec)
    wrapper_pid = int((state_dir / spec.name / "wrapper_pid").read_text())
    os.kill(wrapper_pid, signal.SIGKILL)
    # The orphaned trainer still runs, so there is no outcome yet.
    assert await runtime.wait(spec.name, 0.5) is None
    os.killpg(pid_of(state_dir, spec.name), signal.SIGKILL)
    assert await runtime.wait(spec.name, 10) == 137
    assert "supervisor died" in await runtime.logs(spec.name)


async def test_wait_is_bounded_and_does_not_block_the_loop(
    runtime: ProcessRuntime, make_spec: SpecFactory
) -> None:
    spec = make_spec(sh("sleep 30"))
    await runtime.start(spec)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    began = time.monotonic()
    assert await runtime.wait(spec.name, 1.0) is None
    assert await runtime.wait(spec.name, 0) is None
    elapsed = time.monotonic() - began
    ticker.cancel()
    assert elapsed > 0.9
    # The loop kept running while wait() waited (a blocked loop would not tick at all).
    assert ticks >= 3


async def test_stop_sends_sigterm_to_the_group_first(
    runtime: ProcessRuntime, make_spec: SpecFactory, state_dir: Path
) -> None:
    spec = make_spec(sh(TRAP_TERM))
    await runtime.start(spec)
    await asyncio.sleep(0.3)  # Let the shell install its trap.
    assert await runtime.stop(spec.name, grace_seconds=10) == 3
    assert "got-term" in await runtime.logs(spec.name)
    assert not is_running(pid_of(state_dir, spec.name))


async def test_stop_kills_after_the_grace(runtime: ProcessRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(sh(IGNORE_TERM))
    await runtime.start(spec)
    await asyncio.sleep(0.3)
    began = time.monotonic()
    assert await runtime.stop(spec.name, grace_seconds=1) == 137
    assert time.monotonic() - began > 0.9  # the grace period was given


async def test_remove_kills_a_running_unit(
    runtime: ProcessRuntime, make_spec: SpecFactory, state_dir: Path
) -> None:
    spec = make_spec(sh("sleep 30"))
    await runtime.start(spec)
    pid = pid_of(state_dir, spec.name)
    await runtime.remove(spec.name)
    assert not (state_dir / spec.name).exists()
    assert not is_running(pid)


@pytest.mark.parametrize(
    "command",
    [["no-such-trainer-binary", "--epochs", "1"], ["/nonexistent/train.py"], ["./train.py"]],
)
async def test_missing_executable_is_invalid_and_leaves_nothing(
    runtime: ProcessRuntime, make_spec: SpecFactory, state_dir: Path, command: list[str]
) -> None:
    spec = make_spec(command)
    with pytest.raises(InvalidSpecError, match="train"):
        await runtime.start(spec)
    assert not (state_dir / spec.name).exists()


async def test_unrunnable_executable_is_invalid_and_leaves_nothing(
    runtime: ProcessRuntime, make_spec: SpecFactory, state_dir: Path, tmp_path: Path
) -> None:
    # Executable bit but no valid format: only the exec itself can tell.
    garbage = tmp_path / "train"
    garbage.write_bytes(b"\x00\x01not a program")
    garbage.chmod(0o755)
    spec = make_spec([str(garbage)])
    with pytest.raises(InvalidSpecError, match="Exec format error"):
        await runtime.start(spec)
    assert not (state_dir / spec.name).exists()


async def test_empty_command_is_invalid(runtime: ProcessRuntime, make_spec: SpecFactory) -> None:
    with pytest.raises(InvalidSpecError, match="needs a command"):
        await runtime.start(make_spec([]))


async def test_checkpoint_directory_is_created_and_writable(
    runtime: ProcessRuntime, make_spec: SpecFactory, tmp_path: Path
) -> None:
    host_dir = tmp_path / "checkpoints" / "job"
    spec = make_spec(
        sh('echo step-42 > "$CKPT/latest.txt"'),
        env={"CKPT": str(host_dir)},
        checkpoint_host_dir=host_dir,
    )
    await runtime.start(spec)
    assert await runtime.wait(spec.name, 10) == 0
    assert (host_dir / "latest.txt").read_text() == "step-42\n"


async def test_labels_are_listed(runtime: ProcessRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(sh("exit 0"))
    await runtime.start(spec)
    ((name, labels, _),) = await runtime.list_units()
    assert name == spec.name
    assert labels[LABEL_JOB_ID] == JOB_ID
    assert labels == spec.labels


async def test_missing_unit(runtime: ProcessRuntime) -> None:
    with pytest.raises(LookupError):
        await runtime.wait("orch-missing", 1)
    with pytest.raises(LookupError):
        await runtime.logs("orch-missing")
    assert await runtime.stop("orch-missing", 1) is None
    await runtime.remove("orch-missing")
