"""Recorded histories of real runs still replay against today's TrainingJobWorkflow.

The histories in ``histories/<release>/`` were recorded by ``record_histories.py`` from the
workflow as it ran them; a change to the workflow that in-flight runs could not survive (a
new, removed or reordered command) fails here. No server is needed: the replayer is in-process.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.training import UNLIMITED_ATTEMPT_RETRIES, TrainingJobWorkflow

HISTORIES_DIR = Path(__file__).parent / "histories"
HISTORY_FILES = sorted(HISTORIES_DIR.glob("*/*.json"))
# The release whose RunPlan and RunAttemptInput carried the job spec flat.
FLAT_SPEC = "0.1-flat-spec"
REQUIRED = {"completed", "retried", "failed", "cancelled", "sdk_started", "mid_run"}
# Recorded after the attempt activity's retries became unlimited (a patch of the workflow).
INFRA_COUNTED = "0.2-infra-counted"


def load(path: Path) -> WorkflowHistory:
    text = path.read_text()
    started = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(started.get("workflowId") or path.stem, text)


def test_corpus_holds_every_recorded_case() -> None:
    assert REQUIRED <= {path.stem for path in HISTORY_FILES if path.parent.name == FLAT_SPEC}
    newer = {path.stem for path in HISTORY_FILES if path.parent.name == INFRA_COUNTED}
    assert REQUIRED | {"oom_killed"} <= newer


def patch_ids(path: Path) -> set[str]:
    """The ids of the ``workflow.patched`` markers a recorded history holds."""
    ids = set()
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker.get("markerName") == "core_patch":
            data = marker["details"]["patch-data"]["payloads"][0]["data"]
            ids.add(json.loads(base64.b64decode(data))["id"])
    return ids


def test_newer_histories_took_the_patched_path() -> None:
    for path in HISTORY_FILES:
        expected = {UNLIMITED_ATTEMPT_RETRIES} if path.parent.name == INFRA_COUNTED else set()
        assert expected <= patch_ids(path), path


@pytest.mark.parametrize(
    "path", HISTORY_FILES, ids=[f"{path.parent.name}/{path.stem}" for path in HISTORY_FILES]
)
async def test_history_replays(path: Path) -> None:
    history = load(path)
    assert history.events, f"{path.name} holds no events"
    replayer = Replayer(workflows=[TrainingJobWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
