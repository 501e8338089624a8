"""Notifications of run status changes on Slack and by email.

The notify activity (``activities/notify.py``) drives the channels in this package; the API
calls :func:`validate_job_notifications` so that a per-job setting the worker could not honour
is refused when the job is written, not discovered when a run ends. This module stays free of
Slack and SMTP imports because the API imports it.
"""

from __future__ import annotations

from jobs.config import Settings
from jobs.errors import InvalidInput
from jobs.fields import NotificationSettings

REDACTED = "[redacted]"


class DeliveryFailed(Exception):
    """A channel did not take the message; ``reason`` is safe to record and show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def validate_job_notifications(
    settings: Settings, notifications: NotificationSettings | None
) -> None:
    """Refuse per-job notification settings that this deployment cannot carry out.

    Args:
        settings: The server's settings (which channels exist and how they are reached).
        notifications: The job's ``notifications`` field as sent by the client.

    Raises:
        InvalidInput: A per-job Slack channel without a bot token (an incoming webhook posts
            only to its own channel), or per-job email recipients without SMTP.
    """
    if notifications is None:
        return
    if notifications.slack_channel and not settings.slack_bot_token:
        if settings.slack_webhook_url:
            raise InvalidInput(
                "notifications.slack_channel: this server posts to Slack through an incoming "
                "webhook (SLACK_WEBHOOK_URL), which always posts to its own channel; a per-job "
                "channel needs SLACK_BOT_TOKEN"
            )
        raise InvalidInput(
            "notifications.slack_channel: Slack is not configured on this server "
            "(a per-job channel needs SLACK_BOT_TOKEN)"
        )
    if notifications.email_to and not settings.smtp_host:
        raise InvalidInput(
            "notifications.email_to: email is not configured on this server (SMTP_HOST)"
        )


def secret_values(settings: Settings) -> list[str]:
    """Every configured secret, including the path of the webhook URL (its secret part)."""
    values = [
        secret.get_secret_value()
        for secret in (settings.slack_webhook_url, settings.slack_bot_token, settings.smtp_password)
        if secret is not None and secret.get_secret_value()
    ]
    if settings.slack_webhook_url:
        url = settings.slack_webhook_url.get_secret_value()
        path = url.split("://", 1)[-1].partition("/")[2]
        # A short path would be no secret, and replacing it would garble every detail.
        if len(path) >= 8:
            values.append(path)
    # Longest first, so a URL is replaced whole before its path is looked for.
    return sorted(values, key=len, reverse=True)


def redact(text: str, settings: Settings) -> str:
    """``text`` with every configured secret replaced; servers may echo what they were sent."""
    for secret in secret_values(settings):
        text = text.replace(secret, REDACTED)
    return text
