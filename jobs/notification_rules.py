"""Per-job notification settings this deployment can carry out, checked when a job is written."""

from __future__ import annotations

from core.errors import InvalidInput
from core.settings import Settings
from jobs.fields import NotificationSettings


def validate_job_notifications(
    settings: Settings, notifications: NotificationSettings | None
) -> None:
    """Refuse per-job notification settings that this deployment cannot carry out.

    Args:
        settings: The server's settings (which channels exist and how they are reached).
        notifications: The job's ``notifications`` field as sent by the client.

    Raises:
        InvalidInput: A per-job Slack channel without a bot token (an incoming webhook posts
            only to its own channel), or per-job email recipients without SMTP or outside
            EMAIL_ALLOWED_DOMAINS.
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
    allowed = settings.email_allowed_domains
    for address in notifications.email_to or []:
        if address.rpartition("@")[2].lower() not in allowed:
            raise InvalidInput(
                f"notifications.email_to: {address} is outside EMAIL_ALLOWED_DOMAINS "
                f"({', '.join(allowed) or 'empty: no per-job recipients on this server'})"
            )
