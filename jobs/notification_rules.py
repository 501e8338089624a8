"""Per-job notification settings this deployment can carry out, checked when a job is written."""

from __future__ import annotations

from core.errors import InvalidInput
from core.settings import Settings
from jobs.fields import NotificationSettings
from notifications.registry import job_option_problems


def validate_job_notifications(
    settings: Settings, notifications: NotificationSettings | None
) -> None:
    """Refuse per-job notification settings that this deployment cannot carry out.

    Args:
        settings: The server's settings (which channels exist and how they are reached).
        notifications: The job's ``notifications`` field as sent by the client.

    Raises:
        InvalidInput: Some channel cannot carry out its options, e.g. a per-job Slack channel
            without a bot token (an incoming webhook posts only to its own channel), or
            per-job email recipients without SMTP or outside EMAIL_ALLOWED_DOMAINS.
    """
    if notifications is None:
        return
    problems = job_option_problems(settings, notifications.model_dump())
    if problems:
        raise InvalidInput("; ".join(problems))
    allowed = settings.email_allowed_domains
    for address in notifications.email_to or []:
        if address.rpartition("@")[2].lower() not in allowed:
            raise InvalidInput(
                f"notifications.email_to: {address} is outside EMAIL_ALLOWED_DOMAINS "
                f"({', '.join(allowed) or 'empty: no per-job recipients on this server'})"
            )
