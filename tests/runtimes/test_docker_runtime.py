"""DockerRuntime against the real engine, with a FROM-scratch busybox image and no network."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from runtimes.base import (
    LABEL_ATTEMPT,
    LABEL_DEPLOYMENT,
    LABEL_INCARNATION,
    LABEL_JOB_ID,
    LABEL_RUN_ID,
    ContainerSpec,
    ImageUnavailableError,
    InvalidSpecError,
    RuntimeUnavailableError,
    unit_name,
)
from runtimes.docker import DockerRuntime
from runtimes.docker_options import create_kwargs, mounts_of

TRAP_TERM = 'trap "echo got-term; exit 3" TERM; while true; do sleep 0.2; done'
IGNORE_TERM = 'trap "" TERM; while true; do sleep 0.2; done'

SpecFactory = Callable[..., ContainerSpec]


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def job_id(client: docker.DockerClient) -> Iterator[str]:
    """A job id unique to the test; every container labelled with it is removed afterwards."""
    job = f"test-{uuid.uuid4().hex[:10]}"
    yield job
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_JOB_ID}={job}"}):
        container.remove(force=True)


@pytest.fixture
def make_spec(busybox_image: str, job_id: str) -> SpecFactory:
    attempts = iter(range(1, 1000))

    def make(command: list[str], **overrides: object) -> ContainerSpec:
        attempt = next(attempts)
        fields: dict[str, object] = {
            "name": unit_name(job_id, "run:1", attempt),
            "job_id": job_id,
            "run_id": "run:1",
            "attempt": attempt,
            "image": busybox_image,
            "command": command,
        }
        fields.update(overrides)
        return ContainerSpec(**fields)  # type: ignore[arg-type]

    return make


@pytest.fixture
def runtime() -> DockerRuntime:
    return DockerRuntime(network_mode="none")


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def containers_named(client: docker.DockerClient, name: str) -> list[str | None]:
    # The name filter is a regex matching substrings; anchor it to count exact matches only.
    return [c.name for c in client.containers.list(all=True, filters={"name": f"^/{name}$"})]


async def test_exit_codes_and_settings(
    runtime: DockerRuntime, make_spec: SpecFactory, client: docker.DockerClient
) -> None:
    ok = make_spec(sh("echo hello"))
    failing = make_spec(sh("exit 3"))
    assert not (await runtime.start(ok)).reattached
    assert not (await runtime.start(failing)).reattached
    assert await runtime.wait(ok.name, 30) == 0
    assert await runtime.wait(failing.name, 30) == 3

    attrs = client.containers.get(ok.name).attrs
    assert attrs["HostConfig"]["NetworkMode"] == "none"
    assert attrs["HostConfig"]["Privileged"] is False
    assert attrs["Config"]["Labels"] == {
        LABEL_DEPLOYMENT: "",
        LABEL_JOB_ID: ok.job_id,
        LABEL_RUN_ID: "run:1",
        LABEL_ATTEMPT: str(ok.attempt),
        LABEL_INCARNATION: "1",
    }


async def test_logs_combine_streams_and_tail(
    runtime: DockerRuntime, make_spec: SpecFactory
) -> None:
    spec = make_spec(
        # The engine does not order stdout against stderr; the pause keeps the test stable.
        sh("echo oops >&2; sleep 0.3; for i in 1 2 3 4; do echo line-$i; done; echo $GREETING"),
        env={"GREETING": "héllo"},
    )
    await runtime.start(spec)
    assert await runtime.wait(spec.name, 30) == 0
    full = await runtime.logs(spec.name)
    assert full.splitlines() == ["oops", "line-1", "line-2", "line-3", "line-4", "héllo"]
    assert await runtime.logs(spec.name, tail=2) == "line-4\nhéllo\n"


async def test_start_twice_while_running_reattaches(
    runtime: DockerRuntime, make_spec: SpecFactory, client: docker.DockerClient
) -> None:
    spec = make_spec(["sleep", "30"])
    first, second = await asyncio.gather(runtime.start(spec), runtime.start(spec))
    assert sorted([first.reattached, second.reattached]) == [False, True]
    assert (await DockerRuntime(network_mode="none").start(spec)).reattached
    assert containers_named(client, spec.name) == [spec.name]
    labelled = client.containers.list(all=True, filters={"label": f"{LABEL_JOB_ID}={spec.job_id}"})
    assert [c.name for c in labelled] == [spec.name]
    units = [unit for unit in await runtime.list_units() if unit[0] == spec.name]
    assert units == [(spec.name, spec.labels, True)]


async def test_a_container_created_but_never_started_is_started_once(
    runtime: DockerRuntime, make_spec: SpecFactory, client: docker.DockerClient
) -> None:
    """A worker that died between create and start: the next start starts that container."""
    spec = make_spec(["sh", "-c", "echo once"])
    kwargs = create_kwargs(spec, "none", mounts_of(spec))
    created = await asyncio.to_thread(lambda: client.containers.create(**kwargs))
    assert (await runtime.start(spec)).reattached
    assert await runtime.wait(spec.name, 30) == 0
    assert await runtime.logs(spec.name) == "once\n"
    assert containers_named(client, spec.name) == [spec.name]
    created.reload()
    assert created.attrs["State"]["StartedAt"] != "0001-01-01T00:00:00Z"


async def test_exited_container_is_reaped_through_wait(
    runtime: DockerRuntime, make_spec: SpecFactory, client: docker.DockerClient
) -> None:
    spec = make_spec(sh("echo once; exit 5"))
    await runtime.start(spec)
    assert await runtime.wait(spec.name, 30) == 5

    # A new worker finds the exited container instead of running the command again.
    later = DockerRuntime(network_mode="none")
    assert (await later.start(spec)).reattached
    # A zero timeout answers only what is already known: the exit code needs no waiting.
    assert await later.wait(spec.name, 0) == 5
    assert await later.logs(spec.name) == "once\n"
    assert [unit for unit in await later.list_units() if unit[0] == spec.name] == [
        (spec.name, spec.labels, False)
    ]
    await later.remove(spec.name)
    assert containers_named(client, spec.name) == []


async def test_created_but_never_started_container_is_started_on_reattach(
    runtime: DockerRuntime, make_spec: SpecFactory, client: docker.DockerClient
) -> None:
    spec = make_spec(sh("exit 4"))
    # What a worker that died between create and start leaves behind.
    client.containers.create(
        spec.image, spec.command, name=spec.name, labels=spec.labels, network_mode="none"
    )
    assert await runtime.wait(spec.name, 0.5) is None
    assert (await runtime.start(spec)).reattached
    assert await runtime.wait(spec.name, 30) == 4


async def test_wait_is_bounded_and_does_not_block_the_loop(
    runtime: DockerRuntime, make_spec: SpecFactory
) -> None:
    spec = make_spec(["sleep", "30"])
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


async def test_stop_sends_sigterm_first(runtime: DockerRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(sh(TRAP_TERM))
    await runtime.start(spec)
    await asyncio.sleep(0.5)  # Let the shell install its trap.
    assert await runtime.stop(spec.name, grace_seconds=10) == 3
    assert "got-term" in await runtime.logs(spec.name)


async def test_stop_kills_after_the_grace(runtime: DockerRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(sh(IGNORE_TERM))
    await runtime.start(spec)
    await asyncio.sleep(0.5)
    began = time.monotonic()
    assert await runtime.stop(spec.name, grace_seconds=1) == 137
    assert time.monotonic() - began > 0.9  # the grace period was given


async def test_missing_executable_is_invalid_and_leaves_nothing(
    runtime: DockerRuntime, make_spec: SpecFactory, client: docker.DockerClient
) -> None:
    for command in (["no-such-trainer", "--epochs", "1"], ["/opt/train.py"]):
        spec = make_spec(command)
        with pytest.raises(InvalidSpecError, match=command[0]):
            await runtime.start(spec)
        assert containers_named(client, spec.name) == []


@pytest.mark.parametrize("policy", ["never", "if-not-present", "always"])
async def test_start_never_pulls_a_missing_image(make_spec: SpecFactory, policy: str) -> None:
    """Pulls are prepare_image's (the pull_image activity): start only reports the absence."""
    runtime = DockerRuntime(network_mode="none", pull_policy=policy)  # type: ignore[arg-type]
    image = f"orchestrator-test-missing-{uuid.uuid4().hex[:8]}:latest"
    with pytest.raises(ImageUnavailableError, match=image):
        await runtime.start(make_spec(["true"], image=image))


async def test_a_missing_image_is_unavailable_when_the_policy_is_never(
    busybox_image: str,
) -> None:
    runtime = DockerRuntime(network_mode="none", pull_policy="never")
    image = f"orchestrator-test-missing-{uuid.uuid4().hex[:8]}:latest"
    with pytest.raises(ImageUnavailableError, match="pull policy is 'never'"):
        await runtime.prepare_image(image, lambda summary: None)
    assert not await runtime.prepare_image(busybox_image, lambda summary: None)


async def test_an_image_is_present_only_when_it_may_be_used_without_a_pull(
    busybox_image: str,
) -> None:
    """What start_run asks to let a run skip its pull: never a pull, never an error."""
    missing = f"orchestrator-test-missing-{uuid.uuid4().hex[:8]}:latest"
    for policy in ("never", "if-not-present"):
        runtime = DockerRuntime(network_mode="none", pull_policy=policy)  # type: ignore[arg-type]
        assert await runtime.image_present(busybox_image)
        assert not await runtime.image_present(missing)
        assert not await runtime.image_present("Not A Valid Reference")
    # "always" asks for a pull before every start, present or not.
    always = DockerRuntime(network_mode="none", pull_policy="always")
    assert not await always.image_present(busybox_image)
    unreachable = DockerRuntime(
        client_factory=lambda: docker.DockerClient(base_url="unix:///nonexistent.sock"),
        network_mode="none",
    )
    assert not await unreachable.image_present(busybox_image)


async def test_units_are_listed_by_run_when_asked(
    runtime: DockerRuntime, make_spec: SpecFactory, job_id: str
) -> None:
    """A start lists its own run's units (the engine filters), not every unit of the host."""
    mine = make_spec(["true"])
    other = make_spec(["true"], run_id="run:2", name=unit_name(job_id, "run:2", 1))
    await runtime.start(mine)
    await runtime.start(other)
    everything = {name for name, _labels, _running in await runtime.list_units()}
    assert {mine.name, other.name} <= everything
    listed = await runtime.list_units("run:1")
    assert [name for name, _labels, _running in listed] == [mine.name]
    assert all(labels[LABEL_RUN_ID] == "run:1" for _name, labels, _running in listed)


async def test_invalid_image_name_is_invalid_spec(
    runtime: DockerRuntime, make_spec: SpecFactory
) -> None:
    with pytest.raises(InvalidSpecError, match="invalid image name"):
        await runtime.prepare_image("Not A Valid Reference", lambda summary: None)
    with pytest.raises(InvalidSpecError, match="invalid reference format"):
        await runtime.start(make_spec(["true"], image="Not A Valid Reference"))


async def test_unreachable_engine_explains_the_way_out(make_spec: SpecFactory) -> None:
    runtime = DockerRuntime(
        client_factory=lambda: docker.DockerClient(base_url="unix:///nonexistent.sock"),
        network_mode="none",
    )
    with pytest.raises(RuntimeUnavailableError, match="RUNTIME=process") as caught:
        await runtime.start(make_spec(["true"]))
    assert "could not be reached" in str(caught.value)
    with pytest.raises(RuntimeUnavailableError):
        await runtime.list_units()


async def test_checkpoint_directory_is_mounted_read_write(
    runtime: DockerRuntime, make_spec: SpecFactory, tmp_path: Path
) -> None:
    host_dir = tmp_path / "checkpoints" / "job"
    spec = make_spec(
        sh("cat /ckpt/seed.txt && echo step-42 > /ckpt/latest.txt"),
        checkpoint_host_dir=host_dir,
        checkpoint_mount_path="/ckpt",
    )
    host_dir.mkdir(parents=True)
    (host_dir / "seed.txt").write_text("from-host\n")
    await runtime.start(spec)
    assert await runtime.wait(spec.name, 30) == 0
    assert (host_dir / "latest.txt").read_text() == "step-42\n"
    assert await runtime.logs(spec.name) == "from-host\n"


async def test_relative_mount_path_is_invalid(
    runtime: DockerRuntime, make_spec: SpecFactory, tmp_path: Path
) -> None:
    spec = make_spec(["true"], checkpoint_host_dir=tmp_path, checkpoint_mount_path="ckpt")
    with pytest.raises(InvalidSpecError, match="absolute"):
        await runtime.start(spec)


async def test_missing_container(runtime: DockerRuntime) -> None:
    name = f"orch-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(LookupError):
        await runtime.wait(name, 1)
    with pytest.raises(LookupError):
        await runtime.logs(name)
    assert await runtime.stop(name, 1) is None
    await runtime.remove(name)
