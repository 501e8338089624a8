"""Signed webhooks: each transition POSTed as JSON to WEBHOOK_URL, signed with WEBHOOK_SECRET.

The signature follows Determined's (and Stripe's) scheme, ``X-Signature-256: t=<unix time>,
v1=<hex HMAC-SHA256 of "{t}.{body}">``: a receiver checks who sent the event and when, and
refuses old ones (replays). ``X-Event-Id`` is the same on every delivery of one transition
while ``t`` is new each time, so a receiver drops the duplicates a retry may cause.

There are no per-job URLs: a job's author must not be able to aim the worker at any host.
One POST per call: the notify activity's retries (within NOTIFY_TIMEOUT_SECONDS) are the only
ones, so a delivery recorded as sent is never repeated.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from core.settings import Settings
from notifications import DeliveryFailed
from notifications.base import ChannelSettings, JobOptions, is_http_url, url_secrets
from notifications.messages import RunFacts

# httpx logs each request's URL at INFO, and a receiver's URL may carry a token in its path.
logging.getLogger("httpx").setLevel(logging.WARNING)

SIGNATURE_HEADER = "X-Signature-256"
EVENT_ID_HEADER = "X-Event-Id"
_USER_AGENT = "training-orchestrator-webhook/1"
# Enough of a refusal to tell why; a receiver's answer is never read whole into memory.
_MAX_ANSWER_BYTES = 1000
# Answers that a later try may turn into a success; any other refusal is final.
_RETRYABLE = frozenset({408, 425, 429})


class WebhookSettings(ChannelSettings):
    """WEBHOOK_URL and WEBHOOK_SECRET: both, or neither."""

    webhook_url: SecretStr | None
    webhook_secret: SecretStr | None

    def problems(self) -> list[str]:
        problems = []
        if self.webhook_url and not self.webhook_secret:
            problems.append("WEBHOOK_URL needs WEBHOOK_SECRET (receivers verify signatures)")
        if self.webhook_secret and not self.webhook_url:
            problems.append("WEBHOOK_SECRET is used only with WEBHOOK_URL")
        if self.webhook_url and not is_http_url(self.webhook_url.get_secret_value()):
            problems.append("WEBHOOK_URL must be an http(s) URL")
        return problems

    def secrets(self) -> list[str]:
        # Receivers' URLs often carry a token in the path (Teams, PagerDuty, Zapier ...).
        url = self.webhook_url
        return super().secrets() + (url_secrets(url.get_secret_value()) if url else [])


class WebhookChannel:
    """POSTs run transitions, signed, to the one receiver the deployment names."""

    name: ClassVar[str] = "webhook"
    settings_model: ClassVar[type[ChannelSettings]] = WebhookSettings
    # No options: the URL is the operator's choice alone.
    job_options_model: ClassVar[type[JobOptions]] = JobOptions

    def __init__(self, url: str, secret: bytes) -> None:
        self._url = url
        self._secret = secret

    @classmethod
    def configured(cls, settings: Settings) -> WebhookChannel | None:
        """The channel when WEBHOOK_URL is set, else None."""
        hook = WebhookSettings.of(settings)
        if hook.webhook_url is None or hook.webhook_secret is None:
            return None
        return cls(
            hook.webhook_url.get_secret_value(), hook.webhook_secret.get_secret_value().encode()
        )

    async def send(self, facts: RunFacts, job_options: JobOptions, timeout: float) -> str | None:
        """POST the event once; raises DeliveryFailed, retryable unless the receiver refused it."""
        body = encode_event(facts)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            EVENT_ID_HEADER: event_id(facts),
            SIGNATURE_HEADER: sign(self._secret, int(time.time()), body),
        }
        try:
            # No redirects: the receiver is the configured URL, not wherever it points to.
            async with (
                httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client,
                client.stream("POST", self._url, content=body, headers=headers) as answer,
            ):
                if answer.is_success:
                    return None
                text = await _read_start(answer)
        except httpx.TimeoutException as err:
            raise DeliveryFailed(
                f"webhook: timed out after {timeout:.1f} s without an answer"
            ) from err
        except httpx.HTTPError as err:
            raise DeliveryFailed(f"webhook not reached ({type(err).__name__}: {err})") from err
        code = answer.status_code
        raise DeliveryFailed(
            f"webhook answered HTTP {code}" + (f": {text}" if text else ""),
            retryable=code >= 500 or code in _RETRYABLE,
        )


def event_id(facts: RunFacts) -> str:
    """The same for every delivery of one transition of one run, and only for it."""
    return hashlib.sha256(f"{facts.run_id}\n{facts.event}".encode()).hexdigest()


def event_payload(facts: RunFacts) -> dict[str, Any]:
    """The JSON event: what happened to which run, when, and where to look."""
    return {
        "event_id": event_id(facts),
        "event": facts.event,
        "job_id": facts.job_id,
        "job_name": facts.job_name,
        "run_id": facts.run_id,
        "status": facts.status,
        "attempt": facts.attempt,
        "attempts_allowed": facts.attempts_allowed,
        "occurred_at": _timestamp(facts.occurred_at),
        "started_at": _timestamp(facts.started_at),
        "duration_seconds": facts.duration.total_seconds() if facts.duration else None,
        "exit_code": facts.exit_code,
        "error": facts.error,
        "temporal_ui_url": facts.run_url,
    }


def encode_event(facts: RunFacts) -> bytes:
    """The body as sent and signed (receivers verify these exact bytes)."""
    return json.dumps(event_payload(facts), separators=(",", ":")).encode()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``t=<timestamp>,v1=<hex HMAC-SHA256 of "{timestamp}.{body}">``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def _read_start(answer: httpx.Response) -> str:
    start = b""
    async for chunk in answer.aiter_bytes():
        start += chunk
        if len(start) >= _MAX_ANSWER_BYTES:
            break
    return " ".join(start[:_MAX_ANSWER_BYTES].decode(errors="replace").split())[:200]
