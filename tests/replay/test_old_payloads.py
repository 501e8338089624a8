"""Payloads recorded before the contract changed still decode and still run every activity.

The histories in ``histories/0.1-flat-spec/`` were recorded from the release whose ``RunPlan`` and
``RunAttemptInput`` carried the job spec flat. Runs in flight when a worker is upgraded hand
exactly such payloads to the new activities, so each one is taken from a recorded history,
decoded with today's contract and fed to the real activity (real SQLite, Docker, SMTP).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment

from activities.bookkeeping import RunStoreActivities
from activities.notify import NotifyActivities
from activities.training import TrainingActivities
from core.settings import Settings
from runtimes.docker import DockerRuntime
from store import jobs as job_store
from store.db import create_engine, create_sessionmaker
from store.models import Attempt, Run
from tests.activities.test_notifications import smtp, smtp_server
from tests.conftest import make_settings
from workflows.models import (
    NOTIFY_RUN_STATUS,
    RECORD_RUN_STATUS,
    RUN_TRAINING_CONTAINER,
    START_RUN,
    AttemptOutcome,
    JobStatus,
    RunAttemptInput,
    RunPlan,
    RunStatusUpdate,
    StartRunInput,
)

HISTORIES = Path(__file__).parent / "histories" / "0.1-flat-spec"
INPUTS: dict[str, type[Any]] = {
    START_RUN: StartRunInput,
    RECORD_RUN_STATUS: RunStatusUpdate,
    RUN_TRAINING_CONTAINER: RunAttemptInput,
    NOTIFY_RUN_STATUS: RunStatusUpdate,
}
RESULTS: dict[str, type[Any]] = {START_RUN: RunPlan, RUN_TRAINING_CONTAINER: AttemptOutcome}


def _history(name: str) -> WorkflowHistory:
    path = HISTORIES / f"{name}.json"
    return WorkflowHistory.from_json(name, path.read_text(encoding="utf-8"))


def _recorded(name: str) -> Iterator[tuple[str, str, Payload]]:
    """``(activity, "input" | "result", payload)`` in history order."""
    history = _history(name)
    scheduled: dict[int, str] = {}
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attributes = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attributes.activity_type.name
            yield attributes.activity_type.name, "input", attributes.input.payloads[0]
        elif event.HasField("activity_task_completed_event_attributes"):
            done = event.activity_task_completed_event_attributes
            if done.result.payloads:
                yield scheduled[done.scheduled_event_id], "result", done.result.payloads[0]


def _decode(payload: Payload, kind: type[Any]) -> Any:
    return pydantic_data_converter.payload_converter.from_payloads([payload], [kind])[0]


def _old(name: str, activity: str, part: str = "input") -> tuple[Any, dict[str, Any]]:
    """The first recorded payload of ``activity``: decoded today, and as the raw old JSON."""
    kind = (INPUTS if part == "input" else RESULTS)[activity]
    for found, found_part, payload in _recorded(name):
        if found == activity and found_part == part:
            return _decode(payload, kind), json.loads(payload.data)
    raise AssertionError(f"{name} has no {part} of {activity}")


@pytest.mark.parametrize("name", sorted(path.stem for path in HISTORIES.glob("*.json")))
def test_every_recorded_payload_decodes_into_todays_contract(name: str) -> None:
    seen = set()
    for activity, part, payload in _recorded(name):
        kinds = INPUTS if part == "input" else RESULTS
        if activity not in kinds:
            continue
        decoded = _decode(payload, kinds[activity])
        old = json.loads(payload.data)
        if isinstance(decoded, RunPlan | RunAttemptInput):
            # The old flat spec is nested now, field for field.
            assert "spec" not in old, "the corpus must hold the old flat form"
            assert decoded.spec.image == old["image"]
            assert decoded.spec.command == old["command"]
            assert decoded.spec.checkpoint_path == old["checkpoint_path"]
            assert decoded.spec.resume_policy.value == old["resume_policy"]
        seen.add((activity, part))
    assert (START_RUN, "result") in seen and (START_RUN, "input") in seen


@pytest.fixture
async def sessions(settings: Settings) -> Any:
    engine = create_engine(settings.sqlalchemy_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _job_of(sessions: Any, plan: RunPlan) -> None:
    """The recorded run's job, as its row would have been (ids come from the recording)."""
    async with sessions() as session:
        if await job_store.find_job(session, plan.job_id) is None:
            fields = plan.spec.model_dump() | {"name": plan.name, "max_retries": plan.max_retries}
            session.add(job_store.new_job(plan.job_id, fields))
            await session.commit()


async def test_old_payloads_run_every_activity(
    settings: Settings, sessions: Any, busybox_image: str, temporal_client: Client
) -> None:
    plan, _ = _old("completed", START_RUN, "result")
    await _job_of(sessions, plan)
    start, _ = _old("completed", START_RUN)
    bookkeeping = RunStoreActivities(sessions, settings)
    started: RunPlan = await ActivityEnvironment().run(bookkeeping.start_run, start)
    assert started.spec == plan.spec and started.run_id == start.run_id

    attempt, old_attempt = _old("completed", RUN_TRAINING_CONTAINER)
    assert old_attempt["image"] == busybox_image, "the recording used the suite's image"
    training = TrainingActivities(DockerRuntime(network_mode="none"), sessions, settings)
    outcome: AttemptOutcome = await ActivityEnvironment().run(
        training.run_training_container, attempt
    )
    assert outcome.exit_code == 0 and not outcome.reattached
    async with sessions() as session:
        row = await session.get(Attempt, (attempt.run_id, attempt.attempt))
        assert row is not None and row.exit_code == 0

    final = next(
        _decode(payload, RunStatusUpdate)
        for activity, part, payload in _recorded("completed")
        if activity == RECORD_RUN_STATUS
        and part == "input"
        and json.loads(payload.data)["status"] == "completed"
    )
    await ActivityEnvironment().run(bookkeeping.record_run_status, final)
    async with sessions() as session:
        run = await session.get(Run, final.run_id)
        assert run is not None and run.status == JobStatus.COMPLETED.value

    with smtp_server() as (box, port):
        mail_settings = make_settings(temporal_client, settings.data_dir, **smtp(port))
        notify = NotifyActivities(sessions, mail_settings)
        await ActivityEnvironment().run(notify.notify_run_status, final)
    assert [m["Subject"] for m in box.messages] == [
        f"[training] Job {plan.name} ({plan.job_id}) completed"
    ]
