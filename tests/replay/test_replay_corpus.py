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

from workflows.attempts import PULL_IMAGE_PATCH
from workflows.training import TrainingJobWorkflow

HISTORIES_DIR = Path(__file__).parent / "histories"
HISTORY_FILES = sorted(HISTORIES_DIR.glob("*/*.json"))
# The release whose RunPlan and RunAttemptInput carried the job spec flat.
FLAT_SPEC = "0.1-flat-spec"
REQUIRED = {"completed", "retried", "failed", "cancelled", "sdk_started", "mid_run"}
# The release that pulls in pull_image and runs attempts on the pulling worker's queue.
PULL_ACTIVITY = "0.2-pull-activity"


def load(path: Path) -> WorkflowHistory:
    text = path.read_text()
    started = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(started.get("workflowId") or path.stem, text)


def patches(path: Path) -> set[str]:
    """The ids of the workflow.patched markers a recorded history carries."""
    found = set()
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker["markerName"] == "core_patch":
            for payload in marker["details"]["patch-data"]["payloads"]:
                found.add(json.loads(base64.b64decode(payload["data"]))["id"])
    return found


def test_corpus_holds_every_recorded_case() -> None:
    assert REQUIRED <= {path.stem for path in HISTORY_FILES if path.parent.name == FLAT_SPEC}
    assert REQUIRED | {"image_unavailable"} <= {
        path.stem for path in HISTORY_FILES if path.parent.name == PULL_ACTIVITY
    }


@pytest.mark.parametrize("release", [FLAT_SPEC, PULL_ACTIVITY])
def test_each_release_took_its_own_path(release: str) -> None:
    """0.1 histories replay the path without pull_image, 0.2 histories the path with it."""
    for path in HISTORY_FILES:
        if path.parent.name == release:
            assert (PULL_IMAGE_PATCH in patches(path)) is (release != FLAT_SPEC), path


@pytest.mark.parametrize(
    "path", HISTORY_FILES, ids=[f"{path.parent.name}/{path.stem}" for path in HISTORY_FILES]
)
async def test_history_replays(path: Path) -> None:
    history = load(path)
    assert history.events, f"{path.name} holds no events"
    replayer = Replayer(workflows=[TrainingJobWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
