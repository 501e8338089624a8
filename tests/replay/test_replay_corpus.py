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

from workflows.admission import (
    CAPACITY_PATCH,
    EARLY_RELEASE_PATCH,
    FROZEN_HOST_PATCH,
    REPLACEMENT_PATCH,
)
from workflows.attempts import (
    DIRECT_STARTS_PATCH,
    PULL_IMAGE_PATCH,
    READY_AT_START_PATCH,
    UNLIMITED_ATTEMPT_RETRIES,
)
from workflows.models import HOST_LOST_SIGNAL
from workflows.sandbox import workflow_runner
from workflows.training import SILENT_WITHOUT_CHANNELS_PATCH, TrainingJobWorkflow

HISTORIES_DIR = Path(__file__).parent / "histories"
HISTORY_FILES = sorted(HISTORIES_DIR.glob("*/*.json"))
# The release whose RunPlan and RunAttemptInput carried the job spec flat.
FLAT_SPEC = "0.1-flat-spec"
REQUIRED = {"completed", "retried", "failed", "cancelled", "sdk_started", "mid_run"}
# Each later folder was recorded after one workflow change, with the patch it carries.
PULL_ACTIVITY = "0.2-pull-activity"
INFRA_COUNTED = "0.2-infra-counted"
# Both of those changes together: the path runs took from their merge to 0.4.
BOTH = "0.3-pull-and-infra-counted"
# Two changes on top of that, each recorded on its own: capacity admission (GPU leases,
# queueing), and runs started directly that claim their job, with the RUNNING notice
# concurrent with the attempt (``skipped_firing``: a schedule firing that found a manual run).
CAPACITY = "0.4-capacity"
CAPACITY_CASES = {"gpu_leased", "queued_then_admitted", "queued_cancelled"}
DIRECT_STARTS = "0.4-direct-starts"
# Both together: the path runs took from their merge.
DIRECT_AND_CAPACITY = "0.5-direct-starts-and-capacity"
# Placement epochs on capacity alone, and a run placed again after its host was lost.
REPLACEMENT = "0.5-replacement"
# The 0.5 direct starts and capacity with placement epochs, and with the lease given back by
# the attempt once its container exits (each recorded on its own).
WITH_REPLACEMENT = "0.6-direct-starts-capacity-replacement"
WITH_EARLY_RELEASE = "0.6-early-release"
# Everything of 0.7: the path runs took from its merge.
RELEASE_07 = "0.7-replacement-and-early-release"
# Everything of 0.8: a placed attempt that stops waiting for a host a worker reports lost
# (``reported_lost`` is placed again on that report).
RELEASE_08 = "0.8-frozen-host-detection"
# Everything: the path runs take today, where a run that asks for no capacity starts its first
# attempt on the worker that started it when the image is there, without a pull, and a run
# whose worker has no notification channel asks for no notification.
CURRENT = "0.9-image-ready-at-start"
BEFORE_06 = {PULL_IMAGE_PATCH, UNLIMITED_ATTEMPT_RETRIES, DIRECT_STARTS_PATCH, CAPACITY_PATCH}
PATCHES_07 = BEFORE_06 | {REPLACEMENT_PATCH, EARLY_RELEASE_PATCH}
PATCHES_08 = PATCHES_07 | {FROZEN_HOST_PATCH}
ALL_PATCHES = PATCHES_08 | {READY_AT_START_PATCH, SILENT_WITHOUT_CHANNELS_PATCH}
# Patches only an attempt placed by a lease (with its epoch) reaches.
PLACED_ONLY = {REPLACEMENT_PATCH, EARLY_RELEASE_PATCH, FROZEN_HOST_PATCH}
# And the one only an attempt not placed by a lease reaches.
UNPLACED_ONLY = {READY_AT_START_PATCH}
RELEASES = {
    FLAT_SPEC: (REQUIRED, set()),
    PULL_ACTIVITY: (REQUIRED | {"image_unavailable"}, {PULL_IMAGE_PATCH}),
    INFRA_COUNTED: (REQUIRED | {"oom_killed"}, {UNLIMITED_ATTEMPT_RETRIES}),
    BOTH: (
        REQUIRED | {"image_unavailable", "oom_killed"},
        {PULL_IMAGE_PATCH, UNLIMITED_ATTEMPT_RETRIES},
    ),
    CAPACITY: (
        REQUIRED | {"image_unavailable", "oom_killed"} | CAPACITY_CASES,
        {PULL_IMAGE_PATCH, UNLIMITED_ATTEMPT_RETRIES, CAPACITY_PATCH},
    ),
    DIRECT_STARTS: (
        REQUIRED | {"image_unavailable", "oom_killed", "skipped_firing"},
        {PULL_IMAGE_PATCH, UNLIMITED_ATTEMPT_RETRIES, DIRECT_STARTS_PATCH},
    ),
    DIRECT_AND_CAPACITY: (
        REQUIRED | {"image_unavailable", "oom_killed", "skipped_firing"} | CAPACITY_CASES,
        {PULL_IMAGE_PATCH, UNLIMITED_ATTEMPT_RETRIES, DIRECT_STARTS_PATCH, CAPACITY_PATCH},
    ),
    REPLACEMENT: (
        REQUIRED | {"image_unavailable", "oom_killed"} | CAPACITY_CASES | {"replaced"},
        {PULL_IMAGE_PATCH, UNLIMITED_ATTEMPT_RETRIES, CAPACITY_PATCH, REPLACEMENT_PATCH},
    ),
    WITH_REPLACEMENT: (
        REQUIRED
        | {"image_unavailable", "oom_killed", "skipped_firing", "replaced"}
        | CAPACITY_CASES,
        BEFORE_06 | {REPLACEMENT_PATCH},
    ),
    WITH_EARLY_RELEASE: (
        REQUIRED | {"image_unavailable", "oom_killed", "skipped_firing"} | CAPACITY_CASES,
        BEFORE_06 | {EARLY_RELEASE_PATCH},
    ),
    RELEASE_07: (
        REQUIRED
        | {"image_unavailable", "oom_killed", "skipped_firing", "replaced"}
        | CAPACITY_CASES,
        PATCHES_07,
    ),
    RELEASE_08: (
        REQUIRED
        | {"image_unavailable", "oom_killed", "skipped_firing", "replaced", "reported_lost"}
        | CAPACITY_CASES,
        PATCHES_08,
    ),
    CURRENT: (
        REQUIRED
        | {"image_unavailable", "oom_killed", "skipped_firing", "replaced", "reported_lost"}
        | CAPACITY_CASES,
        ALL_PATCHES,
    ),
}
# A firing skipped for a manual run ends before admission: it carries the direct-starts patch.
SKIPPED = {"skipped_firing"}
# Cases that end (or were caught) before their first attempt: fewer patches than their folder.
BEFORE_AN_ATTEMPT = {"mid_run", "image_unavailable", "queued_cancelled"} | SKIPPED
# Runs placed on a worker by a lease pull there directly: no pull-image-activity marker.
PLACED = {"gpu_leased", "queued_then_admitted", "oom_killed", "replaced", "reported_lost"}


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


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_each_release_holds_its_cases_on_its_own_path(release: str) -> None:
    """Every case was recorded, and took the path of the code that recorded it."""
    cases, carried = RELEASES[release]
    recorded = [path for path in HISTORY_FILES if path.parent.name == release]
    assert cases <= {path.stem for path in recorded}
    for path in recorded:
        # Only the patches that existed when it was recorded; a run that ended (or was caught)
        # before its first attempt never reached the attempt's patch.
        assert patches(path) <= carried, path
        if path.stem not in BEFORE_AN_ATTEMPT and carried:
            expected = carried
            if CAPACITY_PATCH in carried and path.stem in PLACED:
                expected = carried - {PULL_IMAGE_PATCH} - UNPLACED_ONLY
            else:
                # Only a run placed by a lease carries its placement epoch's marker, and only
                # a placed attempt (one that holds a lease) reaches the early release.
                expected = carried - PLACED_ONLY
            assert patches(path) == expected, path
        if CAPACITY_PATCH in carried and path.stem not in SKIPPED:
            assert CAPACITY_PATCH in patches(path), path
        if DIRECT_STARTS_PATCH in carried:
            assert DIRECT_STARTS_PATCH in patches(path), path


def test_a_run_placed_again_on_a_host_lost_report_is_in_the_corpus() -> None:
    """The 0.8 path where a worker's ``host_lost`` signal, not a timeout, moved the run."""
    for release in (RELEASE_08, CURRENT):
        _assert_reported_lost(HISTORIES_DIR / release / "reported_lost.json")


def _assert_reported_lost(path: Path) -> None:
    events = json.loads(path.read_text())["events"]
    signals = [
        e["workflowExecutionSignaledEventAttributes"]["signalName"]
        for e in events
        if "workflowExecutionSignaledEventAttributes" in e
    ]
    cancels = [e for e in events if "activityTaskCancelRequestedEventAttributes" in e]
    assert HOST_LOST_SIGNAL in signals and cancels
    assert FROZEN_HOST_PATCH in patches(path)


@pytest.mark.parametrize(
    "path", HISTORY_FILES, ids=[f"{path.parent.name}/{path.stem}" for path in HISTORY_FILES]
)
async def test_history_replays(path: Path) -> None:
    history = load(path)
    assert history.events, f"{path.name} holds no events"
    replayer = Replayer(
        workflows=[TrainingJobWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
