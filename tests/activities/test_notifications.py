"""Notifications against real local servers: an HTTP server standing in for Slack, aiosmtpd.

Each test runs real jobs through its own worker (own task queue, NOTIFY_TIMEOUT_SECONDS=3) and
asserts on what arrived, and on the delivery records, once the run's workflow has closed.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, Session
from pydantic import ValidationError
from temporalio.client import Client, WorkflowFailureError

from core.settings import Settings
from jobs.responses import Delivery
from store.db import create_engine, create_sessionmaker
from store.deliveries import deliveries_of_runs
from tests.conftest import api_client, make_settings, unique_name, wait_for_status
from worker import build_worker

UI = "http://temporal-ui.test:8233"
HOOK_SECRET = "T0SECRET/B0SECRET/hooksecretXYZ"
BOT_TOKEN = "xoxb-bot-secret-123"
SMTP_PASSWORD = "smtp-pass-secret-456"
FINAL = {"completed", "failed", "cancelled"}


@dataclass
class SlackPost:
    path: str
    authorization: str | None
    body: dict[str, Any]

    def text(self) -> str:
        """The fallback text and every text of the blocks, for assertions."""
        return self.body.get("text", "") + "\n" + "\n".join(_texts(self.body.get("blocks", [])))


def _texts(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                yield value
            else:
                yield from _texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item)


class FakeSlack(ThreadingHTTPServer):
    """Answers like Slack's webhook (``ok``) and ``chat.postMessage`` (``{"ok": true}``)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SlackHandler)
        self.posts: list[SlackPost] = []  # accepted messages
        self.attempts = 0
        self.fail_next = 0  # answer 500 this many times
        self.fail_always = False
        self.hang_seconds = 0.0
        self.release = threading.Event()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _SlackHandler(BaseHTTPRequestHandler):
    server: FakeSlack

    def do_POST(self) -> None:
        fake = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        fake.attempts += 1
        if fake.hang_seconds and fake.release.wait(fake.hang_seconds):
            return  # the test is over
        if fake.fail_always or fake.fail_next:
            fake.fail_next = max(0, fake.fail_next - 1)
            # Echo what was asked for, as some proxies do: it must not reach our records.
            self._answer(500, "text/plain", f"internal error for {self.path}".encode())
            return
        fake.posts.append(SlackPost(self.path, self.headers.get("Authorization"), body))
        if self.path.endswith("/chat.postMessage"):
            answer = {"ok": True, "channel": body.get("channel"), "ts": "1700000000.000100"}
            self._answer(200, "application/json", json.dumps(answer).encode())
        else:
            self._answer(200, "text/plain", b"ok")

    def _answer(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MailBox:
    """aiosmtpd handler keeping every accepted message; can refuse the next ones."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refused = 0
        self.fail_next = 0

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.fail_next:
            self.fail_next -= 1
            self.refused += 1
            return "451 4.3.0 Try again later"
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        message["X-Rcpt-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    server = FakeSlack()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _reject_login(*_: Any) -> AuthResult:
    return AuthResult(success=False, handled=False)


@contextlib.contextmanager
def smtp_server(**options: Any) -> Iterator[tuple[MailBox, int]]:
    box, port = MailBox(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
def mail() -> Iterator[tuple[MailBox, int]]:
    with smtp_server() as running:
        yield running


def smtp(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
        "smtp_from": "orchestrator@example.com",
        "smtp_to": "ops@example.com",
        # Jobs route mail to their own recipients at example.com only.
        "email_allowed_domains": "example.com",
        **extra,
    }


@contextlib.asynccontextmanager
async def stack(
    client: Client, base: Settings, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    """A worker on its own task queue and an API, both with these notification settings."""
    local = make_settings(
        client,
        base.data_dir,
        task_queue=unique_name("tests-notify"),
        temporal_ui_url=UI,
        notify_timeout_seconds=3,
        **overrides,
    )
    async with build_worker(local, client) as worker, worker, api_client(local) as api:
        yield api, local


async def run_job(
    api: httpx.AsyncClient, client: Client, image: str, **spec: Any
) -> dict[str, Any]:
    """Create a one-off job and wait until its run's workflow has closed; returns the job."""
    spec = {"name": unique_name("notify"), "image": image, "max_retries": 0, **spec}
    created = await api.post("/jobs", json=spec)
    assert created.status_code == 201, created.text
    job = await wait_for_status(api, created.json()["job_id"], FINAL, timeout=120)
    # The final notification is sent after the status is written; the workflow waits for it.
    with contextlib.suppress(WorkflowFailureError):
        await client.get_workflow_handle(job["latest_run_id"]).result()
    return job


async def deliveries(settings: Settings, run_id: str) -> list[Delivery]:
    engine = create_engine(settings.sqlalchemy_url)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = (await deliveries_of_runs(session, [run_id]))[run_id]
            return [Delivery.model_validate(row) for row in rows]
    finally:
        await engine.dispose()


def outcomes(views: list[Delivery]) -> set[tuple[str, str, str]]:
    return {(view.channel, view.event, view.status) for view in views}


def parts(message: EmailMessage) -> tuple[str, str]:
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None, "plain text and HTML alternatives"
    return plain.get_content(), html.get_content()


def run_url(run_id: str) -> str:
    return f"{UI}/namespaces/default/workflows/{quote(run_id, safe='')}"


async def test_completed_run_reaches_the_webhook_and_mail(
    settings: Settings, temporal_client: Client, busybox_image: str, slack: FakeSlack, mail: Any
) -> None:
    box, port = mail
    hook = f"{slack.base}/services/{HOOK_SECRET}"
    async with stack(temporal_client, settings, slack_webhook_url=hook, **smtp(port)) as (api, _):
        progress = 'PROGRESS {"step": 10, "total": 10, "metrics": {"loss": 0.25}}'
        job = await run_job(
            api, temporal_client, busybox_image, command=["sh", "-c", f"echo '{progress}'"]
        )
        # The job's own response shows what was sent about its latest run.
        shown = (await api.get(f"/jobs/{job['job_id']}")).json()["latest_run_notifications"]
    run_id = job["latest_run_id"]
    assert job["status"] == "completed"
    assert {(d["channel"], d["event"], d["status"]) for d in shown} == {
        ("slack", "completed#1", "sent"),
        ("email", "completed#1", "sent"),
    }
    # NOTIFY_ON defaults to failed,retrying,completed: one message per channel.
    assert [post.path for post in slack.posts] == [f"/services/{HOOK_SECRET}"]
    text = slack.posts[0].text()
    fallback = slack.posts[0].body["text"]
    for fact in (job["name"], job["job_id"], "completed", run_id, "1 of 1", run_url(run_id)):
        assert fact in text, fact
        assert fact in fallback, f"the text fallback carries {fact!r} too"
    assert "Duration" in fallback
    assert "step 10/10" in fallback and "loss=0.25" in fallback

    [message] = box.messages
    assert message["X-Rcpt-To"] == "ops@example.com"
    assert message["Subject"] == f"[training] Job {job['name']} ({job['job_id']}) completed"
    plain, html = parts(message)
    for fact in (run_id, "1 of 1", "step 10/10"):
        assert fact in plain and fact in html
    assert run_url(run_id) in plain
    assert f'href="{run_url(run_id)}"' in html
    assert outcomes(await deliveries(settings, run_id)) == {
        ("slack", "completed#1", "sent"),
        ("email", "completed#1", "sent"),
    }


async def test_retried_runs_with_a_bot_token(
    settings: Settings, temporal_client: Client, busybox_image: str, slack: FakeSlack, mail: Any
) -> None:
    box, port = mail
    bot = {
        "slack_bot_token": BOT_TOKEN,
        "slack_channel": "#ml-alerts",
        "slack_api_url": f"{slack.base}/api",
    }
    flaky = '[ "$ATTEMPT" -ge 2 ] || { echo "CUDA error: out of memory"; exit 3; }'
    broken = 'echo "step 1"; echo "loss exploded: nan"; exit 3'
    async with stack(temporal_client, settings, **bot, **smtp(port)) as (api, _):
        recovered = await run_job(
            api, temporal_client, busybox_image, command=["sh", "-c", flaky], max_retries=2
        )
        failed = await run_job(
            api, temporal_client, busybox_image, command=["sh", "-c", broken], max_retries=1
        )
    assert recovered["status"] == "completed" and failed["status"] == "failed"
    assert {post.path for post in slack.posts} == {"/api/chat.postMessage"}
    assert {post.authorization for post in slack.posts} == {f"Bearer {BOT_TOKEN}"}
    assert {post.body["channel"] for post in slack.posts} == {"#ml-alerts"}

    def posts_of(job: dict[str, Any]) -> list[str]:
        return [post.text() for post in slack.posts if job["latest_run_id"] in post.text()]

    retrying, completed = posts_of(recovered)
    assert "retrying" in retrying and "1 of 3" in retrying and "exited with code 3" in retrying
    assert "CUDA error: out of memory" in retrying
    assert "completed" in completed and "2 of 3" in completed

    retrying, final = posts_of(failed)
    assert "retrying" in retrying and "1 of 2" in retrying
    assert "failed" in final and "2 of 2" in final
    assert "Attempt 2/2 exited with code 3" in final
    assert "loss exploded: nan" in final, "the last log lines are in the message"
    assert run_url(failed["latest_run_id"]) in final

    subjects = sorted(str(message["Subject"]) for message in box.messages)
    assert len(subjects) == 4
    failure_mail = next(m for m in box.messages if str(m["Subject"]).endswith(" failed"))
    plain, html = parts(failure_mail)
    assert "loss exploded: nan" in plain and "loss exploded: nan" in html
    assert outcomes(await deliveries(settings, failed["latest_run_id"])) == {
        ("slack", "retrying#1", "sent"),
        ("email", "retrying#1", "sent"),
        ("slack", "failed#2", "sent"),
        ("email", "failed#2", "sent"),
    }


async def test_a_channel_failing_once_does_not_repeat_the_other(
    settings: Settings, temporal_client: Client, busybox_image: str, slack: FakeSlack, mail: Any
) -> None:
    box, port = mail
    box.fail_next = 1
    hook = f"{slack.base}/services/{HOOK_SECRET}"
    async with stack(temporal_client, settings, slack_webhook_url=hook, **smtp(port)) as (api, _):
        job = await run_job(api, temporal_client, busybox_image, command=["true"])
    assert job["status"] == "completed"
    # The activity ran twice (the mail came on the retry); Slack got the message once.
    assert box.refused == 1 and len(box.messages) == 1
    assert len(slack.posts) == 1 and slack.attempts == 1
    assert outcomes(await deliveries(settings, job["latest_run_id"])) == {
        ("slack", "completed#1", "sent"),
        ("email", "completed#1", "sent"),
    }


@pytest.mark.parametrize("outage", ["http-500", "hang"])
async def test_a_slack_outage_does_not_change_the_run(
    outage: str,
    settings: Settings,
    temporal_client: Client,
    busybox_image: str,
    slack: FakeSlack,
    mail: Any,
) -> None:
    box, port = mail
    if outage == "hang":
        slack.hang_seconds = 30  # far beyond NOTIFY_TIMEOUT_SECONDS=3
    else:
        slack.fail_always = True
    hook = f"{slack.base}/services/{HOOK_SECRET}"
    async with stack(temporal_client, settings, slack_webhook_url=hook, **smtp(port)) as (api, _):
        job = await run_job(api, temporal_client, busybox_image, command=["true"])
        assert (await api.get(f"/jobs/{job['job_id']}")).json()["status"] == "completed"
    assert job["status"] == "completed"
    assert slack.posts == [] and slack.attempts >= 1
    assert len(box.messages) == 1, "mail went out once while Slack kept failing"
    views = {view.channel: view for view in await deliveries(settings, job["latest_run_id"])}
    assert views["email"].status == "sent"
    assert views["slack"].status == "failed"
    expected = "HTTP 500" if outage == "http-500" else "timed out"
    assert views["slack"].detail is not None and expected in views["slack"].detail


async def test_per_job_channel_recipients_and_events(
    settings: Settings, temporal_client: Client, busybox_image: str, slack: FakeSlack, mail: Any
) -> None:
    box, port = mail
    bot = {
        "slack_bot_token": BOT_TOKEN,
        "slack_channel": "#general",
        "slack_api_url": f"{slack.base}/api/",
    }
    routed = {"events": ["retrying"], "slack_channel": "#team-x", "email_to": ["a@example.com"]}
    flaky = '[ "$ATTEMPT" -ge 2 ] || exit 3'
    async with stack(temporal_client, settings, **bot, **smtp(port)) as (api, _):
        own = await run_job(
            api,
            temporal_client,
            busybox_image,
            command=["sh", "-c", flaky],
            max_retries=1,
            notifications=routed,
        )
        default = await run_job(api, temporal_client, busybox_image, command=["false"])
    assert own["notifications"] == routed
    assert (own["status"], default["status"]) == ("completed", "failed")

    def sent(job: dict[str, Any]) -> list[tuple[str, str]]:
        return [
            (post.body["channel"], post.body["text"].splitlines()[0])
            for post in slack.posts
            if job["latest_run_id"] in post.text()
        ]

    # The job's own events replace NOTIFY_ON: its completion is not announced.
    assert sent(own) == [("#team-x", f"Job {own['name']} ({own['job_id']}) retrying")]
    assert sent(default) == [("#general", f"Job {default['name']} ({default['job_id']}) failed")]
    recipients = sorted((m["X-Rcpt-To"], str(m["Subject"]).split()[-1]) for m in box.messages)
    assert recipients == [("a@example.com", "retrying"), ("ops@example.com", "failed")]


async def test_a_per_job_channel_needs_a_bot_token(
    settings: Settings, temporal_client: Client
) -> None:
    hook = f"http://127.0.0.1:9/services/{HOOK_SECRET}"
    local = make_settings(
        temporal_client, settings.data_dir, task_queue=unique_name("q"), slack_webhook_url=hook
    )
    routed = {"notifications": {"slack_channel": "#team-x"}}
    async with api_client(local) as api:
        spec = {"name": unique_name(), "image": "trainer:1", "command": ["train"]}
        refused = await api.post("/jobs", json={**spec, **routed})
        assert refused.status_code == 400
        assert refused.json()["error_type"] == "ValidationError"
        assert "notifications.slack_channel" in refused.json()["detail"]
        assert "SLACK_BOT_TOKEN" in refused.json()["detail"]
        assert HOOK_SECRET not in refused.text
        no_mail = {"notifications": {"email_to": ["a@example.com"]}}
        refused = await api.post("/jobs", json={**spec, **no_mail})
        assert refused.status_code == 400
        assert "notifications.email_to" in refused.json()["detail"]

        # A yearly schedule: the job exists but does not run during the test.
        created = await api.post("/jobs", json={**spec, "schedule": "0 0 1 1 *"})
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]
        try:
            refused = await api.put(f"/jobs/{job_id}", json=routed)
            assert refused.status_code == 400
            assert "notifications.slack_channel" in refused.json()["detail"]
            events_only = {"notifications": {"events": ["failed"]}}
            assert (await api.put(f"/jobs/{job_id}", json=events_only)).status_code == 200
        finally:
            await api.delete(f"/jobs/{job_id}")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"slack_bot_token": BOT_TOKEN}, "SLACK_BOT_TOKEN needs SLACK_CHANNEL"),
        ({"slack_channel": "#x"}, "SLACK_CHANNEL is used only with SLACK_BOT_TOKEN"),
        (
            {"slack_webhook_url": f"https://h/{HOOK_SECRET}", "slack_bot_token": BOT_TOKEN},
            "not both",
        ),
        ({"slack_webhook_url": HOOK_SECRET}, "SLACK_WEBHOOK_URL must be an http(s) URL"),
        ({"smtp_host": "mail"}, "SMTP_HOST needs SMTP_FROM and SMTP_TO"),
        ({**smtp(25), "smtp_security": "tls"}, "smtp_security"),
        ({**smtp(25), "smtp_password": SMTP_PASSWORD}, "SMTP_USERNAME and SMTP_PASSWORD"),
        ({**smtp(25), "smtp_to": "ops@example.com, nobody"}, "not an email address"),
        ({"notify_on": "failed,finished"}, "NOTIFY_ON: unknown ['finished']"),
    ],
)
def test_invalid_notification_settings_stop_start_up(
    values: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through the environment, as a deployment sets them.
    for key, value in values.items():
        monkeypatch.setenv(key.upper(), str(value))
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)
    assert message in str(raised.value)
    for secret in (HOOK_SECRET, BOT_TOKEN, SMTP_PASSWORD):
        assert secret not in str(raised.value)


def test_lists_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**smtp(25, smtp_to="a@example.com, b@example.com")}.items():
        monkeypatch.setenv(key.upper(), str(value))
    monkeypatch.setenv("NOTIFY_ON", "running,failed")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "")  # as compose files say "not configured"
    loaded = Settings(_env_file=None)
    assert loaded.smtp_to == ["a@example.com", "b@example.com"]
    assert loaded.notify_on == ["running", "failed"]
    assert (loaded.smtp_security, loaded.smtp_port) == ("none", 25)
    assert loaded.slack_bot_token is None


async def test_secrets_stay_out_of_records_responses_and_logs(
    settings: Settings,
    temporal_client: Client,
    busybox_image: str,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack.fail_always = True  # and its answer echoes the secret path of the webhook URL
    hook = f"{slack.base}/services/{HOOK_SECRET}"
    login = {"smtp_username": "orchestrator", "smtp_password": SMTP_PASSWORD}
    caplog.set_level(logging.DEBUG)
    options = {"authenticator": _reject_login, "auth_require_tls": False}
    with smtp_server(**options) as (box, port):
        overrides = {"slack_webhook_url": hook, **smtp(port, **login)}
        async with stack(temporal_client, settings, **overrides) as (api, _):
            job = await run_job(api, temporal_client, busybox_image, command=["false"])
            answers = [
                (await api.get(f"/jobs/{job['job_id']}")).text,
                (await api.get("/jobs")).text,
            ]
    assert job["status"] == "failed" and box.messages == []
    views = await deliveries(settings, job["latest_run_id"])
    assert {(view.channel, view.status) for view in views} == {
        ("slack", "failed"),
        ("email", "failed"),
    }
    details = {view.channel: view.detail or "" for view in views}
    assert "HTTP 500" in details["slack"] and "[redacted]" in details["slack"]
    assert "authentication failed (535)" in details["email"]
    texts = [*answers, *(view.model_dump_json() for view in views)]
    texts += [record.getMessage() for record in caplog.records]
    for secret in (HOOK_SECRET, "hooksecretXYZ", SMTP_PASSWORD):
        assert not [text for text in texts if secret in text], secret
