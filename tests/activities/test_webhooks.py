"""Signed webhooks against a real local receiver that verifies what it gets.

The receiver (``webhook_receiver.py``) runs the verification snippet of docs/notifications.md:
signature, 5-minute timestamp window, event id, and deduplicates on the event id. Each test
runs real jobs through its own worker (NOTIFY_TIMEOUT_SECONDS=3).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from temporalio.client import Client

from core.settings import Settings
from notifications.registry import secret_values
from tests.activities.test_notifications import (
    deliveries,
    outcomes,
    run_job,
    run_url,
    smtp,
    smtp_server,
    stack,
)
from tests.activities.webhook_receiver import (
    ACCEPTED,
    DUPLICATE,
    FAILED,
    SECRET,
    TOKEN,
    LaterClock,
    Received,
    Receiver,
)
from tests.conftest import api_client, free_port, make_settings, unique_name
from workflows.models import NOTIFY_RUN_STATUS


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(SECRET)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def webhook(url: str, secret: str = SECRET) -> dict[str, Any]:
    return {"webhook_url": url, "webhook_secret": secret}


def signature_time(request: Received) -> int:
    fields = dict(item.split("=", 1) for item in request.headers["X-Signature-256"].split(","))
    return int(fields["t"])


async def replay(receiver: Receiver, request: Received, body: bytes | None = None) -> int:
    """Send a recorded request again, as an attacker who captured it would."""
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            receiver.url, content=request.body if body is None else body, headers=headers
        )
    return answer.status_code


async def notify_attempts(client: Client, run_id: str) -> list[int]:
    """The attempt of each notify activity of the run, from its workflow history."""
    history = await client.get_workflow_handle(run_id).fetch_history()
    names = {
        event.event_id: event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    }
    return [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.HasField("activity_task_started_event_attributes")
        and names[event.activity_task_started_event_attributes.scheduled_event_id]
        == NOTIFY_RUN_STATUS
    ]


async def test_runs_deliver_signed_events_the_receiver_verifies(
    settings: Settings, temporal_client: Client, busybox_image: str, receiver: Receiver
) -> None:
    async with stack(temporal_client, settings, **webhook(receiver.url)) as (api, _):
        done = await run_job(api, temporal_client, busybox_image, command=["true"])
        broken = 'echo "loss exploded: nan"; exit 3'
        failed = await run_job(
            api, temporal_client, busybox_image, command=["sh", "-c", broken], max_retries=1
        )
    assert (done["status"], failed["status"]) == ("completed", "failed")
    # NOTIFY_ON defaults to failed,retrying,completed: one event each, all verified.
    assert receiver.verdicts() == [ACCEPTED] * 3
    assert {request.path for request in receiver.requests} == {f"/{TOKEN}"}
    for request in receiver.requests:
        assert request.headers["Content-Type"] == "application/json"
        assert abs(request.at - signature_time(request)) <= 5, "signed when sent"
    completed, retrying, final = receiver.events
    assert receiver.requests[0].headers["X-Event-Id"] == completed["event_id"]
    assert re.fullmatch(r"[0-9a-f]{64}", completed["event_id"])
    assert len({event["event_id"] for event in receiver.events}) == 3

    run_id = done["latest_run_id"]
    assert {k: completed[k] for k in ("event", "job_id", "job_name", "run_id", "status")} == {
        "event": "completed#1",
        "job_id": done["job_id"],
        "job_name": done["name"],
        "run_id": run_id,
        "status": "completed",
    }
    assert (completed["attempt"], completed["attempts_allowed"]) == (1, 1)
    assert (completed["exit_code"], completed["error"]) == (0, None)
    assert completed["temporal_ui_url"] == run_url(run_id)
    started = datetime.fromisoformat(completed["started_at"])
    occurred = datetime.fromisoformat(completed["occurred_at"])
    assert started.utcoffset() is not None and started <= occurred
    assert completed["duration_seconds"] == pytest.approx(
        (occurred - started).total_seconds(), abs=0.01
    )

    assert (retrying["event"], retrying["status"], retrying["attempt"]) == (
        "retrying#1",
        "retrying",
        1,
    )
    assert retrying["duration_seconds"] is None and "exited with code 3" in retrying["error"]
    assert (final["event"], final["attempts_allowed"], final["exit_code"]) == ("failed#2", 2, 3)
    assert final["error"].startswith("Attempt 2/2 exited with code 3")
    assert final["run_id"] == failed["latest_run_id"]
    assert outcomes(await deliveries(settings, run_id)) == {("webhook", "completed#1", "sent")}
    assert outcomes(await deliveries(settings, failed["latest_run_id"])) == {
        ("webhook", "retrying#1", "sent"),
        ("webhook", "failed#2", "sent"),
    }

    # The receiver's checks are real: a replay is a duplicate, an altered body or an old
    # timestamp is refused.
    first = receiver.requests[0]
    assert await replay(receiver, first) == 200
    tampered = first.body.replace(b'"status":"completed"', b'"status":"failed"')
    assert tampered != first.body
    assert await replay(receiver, first, tampered) == 401
    receiver.verify.__globals__["time"] = LaterClock(offset=5 * 60 + 1)
    assert await replay(receiver, first) == 401
    assert receiver.verdicts()[3:] == [
        DUPLICATE,
        "bad signature",
        "timestamp outside the 5-minute window: a replay?",
    ]
    assert len(receiver.events) == 3


async def test_a_receiver_with_another_secret_refuses_the_event(
    settings: Settings, temporal_client: Client, busybox_image: str, receiver: Receiver
) -> None:
    wrong = webhook(receiver.url, secret="not-the-receivers-secret")
    async with stack(temporal_client, settings, **wrong) as (api, _):
        job = await run_job(api, temporal_client, busybox_image, command=["true"])
    assert job["status"] == "completed"
    # Refused with 401: recorded as failed and not retried (trying again cannot help).
    assert receiver.verdicts() == ["bad signature"] and receiver.events == []
    [view] = await deliveries(settings, job["latest_run_id"])
    assert (view.channel, view.event, view.status) == ("webhook", "completed#1", "failed")
    assert view.detail is not None and "HTTP 401" in view.detail
    assert max(await notify_attempts(temporal_client, job["latest_run_id"])) == 1


async def test_a_retried_activity_sends_the_same_event_and_records_it_once(
    settings: Settings, temporal_client: Client, busybox_image: str, receiver: Receiver
) -> None:
    receiver.fail_next = 1
    async with stack(temporal_client, settings, **webhook(receiver.url)) as (api, _):
        job = await run_job(api, temporal_client, busybox_image, command=["true"])
    assert job["status"] == "completed"
    assert receiver.verdicts() == [FAILED, ACCEPTED]
    first, second = receiver.requests
    assert first.headers["X-Event-Id"] == second.headers["X-Event-Id"]
    assert first.body == second.body, "the same event, signed again when resent"
    assert max(await notify_attempts(temporal_client, job["latest_run_id"])) == 2
    assert outcomes(await deliveries(settings, job["latest_run_id"])) == {
        ("webhook", "completed#1", "sent")
    }


async def test_a_retry_for_another_channel_does_not_repeat_the_webhook(
    settings: Settings, temporal_client: Client, busybox_image: str, receiver: Receiver
) -> None:
    with smtp_server() as (box, port):
        box.fail_next = 1
        overrides = {**webhook(receiver.url), **smtp(port)}
        async with stack(temporal_client, settings, **overrides) as (api, _):
            job = await run_job(api, temporal_client, busybox_image, command=["true"])
    assert job["status"] == "completed"
    assert box.refused == 1 and len(box.messages) == 1, "the mail came with the retry"
    assert receiver.verdicts() == [ACCEPTED]
    assert outcomes(await deliveries(settings, job["latest_run_id"])) == {
        ("webhook", "completed#1", "sent"),
        ("email", "completed#1", "sent"),
    }


@pytest.mark.parametrize("outage", ["down", "hang", "http-500"])
async def test_a_receiver_outage_does_not_change_the_run(
    outage: str,
    settings: Settings,
    temporal_client: Client,
    busybox_image: str,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = receiver.url
    if outage == "down":
        url = f"http://127.0.0.1:{free_port()}/{TOKEN}"  # nothing listens there
    elif outage == "hang":
        receiver.hang_seconds = 30  # far beyond NOTIFY_TIMEOUT_SECONDS=3
    else:
        receiver.fail_next = 1000
    async with stack(temporal_client, settings, **webhook(url)) as (api, _):
        job = await run_job(api, temporal_client, busybox_image, command=["true"])
        assert (await api.get(f"/jobs/{job['job_id']}")).json()["status"] == "completed"
        shown = (await api.get(f"/jobs/{job['job_id']}")).text
    assert job["status"] == "completed"
    assert receiver.events == []
    [view] = await deliveries(settings, job["latest_run_id"])
    assert (view.channel, view.event, view.status) == ("webhook", "completed#1", "failed")
    expected = {"down": "not reached", "hang": "timed out", "http-500": "HTTP 500"}[outage]
    assert view.detail is not None and expected in view.detail, view.detail
    if outage != "down":
        assert receiver.requests, "the receiver was asked"
    # The 500 answer echoed the URL's path; neither it nor the secret is kept or logged.
    texts = [shown, view.model_dump_json(), *(record.getMessage() for record in caplog.records)]
    for secret in (TOKEN, SECRET):
        assert not [text for text in texts if secret in text], secret
    if outage == "http-500":
        assert "[redacted]" in view.detail


async def test_a_job_cannot_name_a_webhook_url(
    settings: Settings, temporal_client: Client, receiver: Receiver
) -> None:
    local = make_settings(
        temporal_client, settings.data_dir, task_queue=unique_name("q"), **webhook(receiver.url)
    )
    spec = {"name": unique_name(), "image": "trainer:1", "command": ["train"]}
    async with api_client(local) as api:
        for option in ({"webhook_url": "http://169.254.169.254/"}, {"url": "http://x/"}):
            refused = await api.post("/jobs", json={**spec, "notifications": option})
            assert refused.status_code == 400, refused.text
            assert refused.json()["error_type"] == "ValidationError"
            assert f"notifications.{next(iter(option))}" in refused.json()["detail"]
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"webhook_url": f"https://hooks.example.com/{TOKEN}"}, "WEBHOOK_URL needs WEBHOOK_SECRET"),
        ({"webhook_secret": SECRET}, "WEBHOOK_SECRET is used only with WEBHOOK_URL"),
        (webhook(f"ftp://hooks.example.com/{TOKEN}"), "WEBHOOK_URL must be an http(s) URL"),
    ],
)
def test_invalid_webhook_settings_stop_start_up(
    values: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key.upper(), value)
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)
    assert message in str(raised.value)
    assert TOKEN not in str(raised.value) and SECRET not in str(raised.value)


def test_empty_webhook_variables_leave_it_off_and_its_secrets_are_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEBHOOK_URL", "")
    monkeypatch.setenv("WEBHOOK_SECRET", "")
    assert Settings(_env_file=None).webhook_url is None
    configured = Settings.model_validate(webhook(f"https://hooks.example.com/{TOKEN}"))
    assert {SECRET, TOKEN, f"https://hooks.example.com/{TOKEN}"} <= set(secret_values(configured))
    assert SECRET not in repr(configured) and TOKEN not in repr(configured)
    assert json.dumps(configured.model_dump(mode="json")).count(SECRET) == 0
