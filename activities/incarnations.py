"""The units of one training attempt: one per incarnation, and the newest is the attempt's.

An engine restart kills the attempt's container. The attempt then goes on in a new unit,
its next incarnation (``...-a1-i2``), which resumes from the latest checkpoint. Which
incarnation is current is read from the engine itself, from the units' labels, so a worker
that crashes at any moment (even between starting the new unit and removing the dead one)
is followed by one that finds the newest unit again; no SQL is involved.
"""

from __future__ import annotations

import contextlib

from runtimes.base import (
    LABEL_ATTEMPT,
    LABEL_RUN_ID,
    ContainerRuntime,
    RuntimeUnavailableError,
    incarnation_of,
)


async def units_of(runtime: ContainerRuntime, run_id: str, attempt: int) -> list[tuple[int, str]]:
    """``(incarnation, name)`` of every unit of the attempt, oldest first."""
    return sorted(
        (incarnation_of(labels), name)
        for name, labels, _running in await runtime.list_units(run_id)
        if labels.get(LABEL_RUN_ID) == run_id and labels.get(LABEL_ATTEMPT) == str(attempt)
    )


async def current_incarnation(runtime: ContainerRuntime, run_id: str, attempt: int) -> int:
    """The newest incarnation the attempt has a unit of; 1 when it has none yet."""
    units = await units_of(runtime, run_id, attempt)
    return units[-1][0] if units else 1


async def remove_units(
    runtime: ContainerRuntime, run_id: str, attempt: int, *, below: int | None = None
) -> None:
    """Remove the attempt's units, or only those of incarnations before ``below``.

    An older incarnation is dead by construction: a newer one starts only after it died.
    The first incarnation has none before it: no listing of the engine's units is made for it
    (every attempt's start would otherwise list them all).
    """
    if below is not None and below <= 1:
        return
    for incarnation, name in await units_of(runtime, run_id, attempt):
        if below is None or incarnation < below:
            await runtime.remove(name)


async def stop_units(
    runtime: ContainerRuntime, run_id: str, attempt: int, grace_seconds: float
) -> int | None:
    """Stop and remove every unit of the attempt (best effort); the newest one's exit code.

    For an attempt given up: nothing of it may train on once the run has failed. An engine
    that cannot be reached keeps its unit; the worker's reconciler removes it when it can.
    """
    code: int | None = None
    with contextlib.suppress(RuntimeUnavailableError):
        for _incarnation, name in await units_of(runtime, run_id, attempt):
            code = await runtime.stop(name, grace_seconds)
            await runtime.remove(name)
    return code
