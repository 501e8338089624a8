"""Notifications of run status changes on Slack and by email.

The notify activity (``activities/notify.py``) gathers the facts of a transition and drives
the channels in this package; channels receive facts, never the store. This module stays free
of Slack and SMTP imports.
"""

from __future__ import annotations

from core.settings import Settings

REDACTED = "[redacted]"


class DeliveryFailed(Exception):
    """A channel did not take the message; ``reason`` is safe to record and show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
