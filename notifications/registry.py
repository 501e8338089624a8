"""Every notification channel, and what the rest of the system does with all of them at once.

Adding a channel is a module with a class that fulfils ``notifications.base.Channel`` and its
line in ``CHANNELS`` (and, when jobs may set options for it, its options model among the bases
of ``ChannelJobOptions``). The start-up check, the redaction, the per-job check and the notify
activity all read this list.
"""

from __future__ import annotations

from typing import Any

from core.settings import Settings, add_channel_check
from notifications import REDACTED
from notifications.base import Channel
from notifications.email import EmailChannel, EmailJobOptions
from notifications.slack import SlackChannel, SlackJobOptions
from notifications.webhook import WebhookChannel

CHANNELS: tuple[type[Channel[Any]], ...] = (SlackChannel, EmailChannel, WebhookChannel)


class ChannelJobOptions(SlackJobOptions, EmailJobOptions):
    """The options of every channel that has some: what a job's ``notifications`` may route."""


def configured_channels(settings: Settings) -> list[Channel[Any]]:
    """The channels these settings turn on, in registry order."""
    return [channel for kind in CHANNELS if (channel := kind.configured(settings)) is not None]


def settings_problems(settings: Settings) -> list[str]:
    """Every channel's complaints about its settings, naming variables, never values."""
    return [problem for kind in CHANNELS for problem in kind.settings_model.of(settings).problems()]


def job_option_problems(settings: Settings, notifications: dict[str, Any]) -> list[str]:
    """What in a job's ``notifications`` this deployment cannot carry out."""
    return [
        problem
        for kind in CHANNELS
        for problem in kind.job_options_model.model_validate(notifications).problems(settings)
    ]


def secret_values(settings: Settings) -> list[str]:
    """Every configured secret of every channel, longest first.

    Longest first, so that a URL is replaced whole before its path is looked for.
    """
    values = {value for kind in CHANNELS for value in kind.settings_model.of(settings).secrets()}
    return sorted(values, key=len, reverse=True)


def redact(text: str, settings: Settings) -> str:
    """``text`` with every configured secret replaced; servers may echo what they were sent."""
    for secret in secret_values(settings):
        text = text.replace(secret, REDACTED)
    return text


add_channel_check(settings_problems)
