"""Slack delivery with slack-sdk: an incoming webhook, or the Web API with a bot token.

The SDK clients are synchronous (the async ones need aiohttp), so each post runs in a thread
with a socket timeout inside the activity's time bound. The SDK's own retries are off: the
activity's retry policy is the only one, so a retry never repeats a channel already sent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, ClassVar

from pydantic import SecretStr, StringConstraints
from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError, SlackClientError

from core.settings import Settings
from notifications import DeliveryFailed
from notifications.base import ChannelSettings, JobOptions, is_http_url, url_secrets
from notifications.messages import STATUS_EMOJI, RunFacts

# The SDK logs request URLs (a webhook URL is a secret) at DEBUG on its own loggers whenever
# their level is unset; this logger always has a level, so those lines are never built.
_sdk_logger = logging.getLogger(__name__ + ".sdk")
_sdk_logger.setLevel(logging.WARNING)

_SECTION_LIMIT = 2900  # Slack refuses section text over 3000 characters.


class SlackSettings(ChannelSettings):
    """SLACK_*: an incoming webhook, or a bot token with a default channel."""

    slack_webhook_url: SecretStr | None
    slack_bot_token: SecretStr | None
    slack_channel: str | None
    slack_api_url: str

    def problems(self) -> list[str]:
        problems = []
        if self.slack_webhook_url and self.slack_bot_token:
            problems.append("set SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN, not both")
        if self.slack_bot_token and not self.slack_channel:
            problems.append("SLACK_BOT_TOKEN needs SLACK_CHANNEL (the default channel)")
        if self.slack_channel and not self.slack_bot_token:
            problems.append("SLACK_CHANNEL is used only with SLACK_BOT_TOKEN")
        if self.slack_webhook_url and not is_http_url(self.slack_webhook_url.get_secret_value()):
            problems.append("SLACK_WEBHOOK_URL must be an http(s) URL")
        if not is_http_url(self.slack_api_url):
            problems.append("SLACK_API_URL must be an http(s) URL")
        return problems

    def secrets(self) -> list[str]:
        # The path of a webhook URL is its secret part, and servers may echo it alone.
        hook = self.slack_webhook_url
        return super().secrets() + (url_secrets(hook.get_secret_value()) if hook else [])


class SlackJobOptions(JobOptions):
    """A job's own Slack channel, which replaces SLACK_CHANNEL (bot token only)."""

    slack_channel: (
        Annotated[
            str, StringConstraints(strip_whitespace=True, pattern=r"^[#@]?[A-Za-z0-9._-]{1,80}$")
        ]
        | None
    ) = None

    def problems(self, settings: Settings) -> list[str]:
        slack = SlackSettings.of(settings)
        if not self.slack_channel or slack.slack_bot_token:
            return []
        if slack.slack_webhook_url:
            return [
                "notifications.slack_channel: this server posts to Slack through an incoming "
                "webhook (SLACK_WEBHOOK_URL), which always posts to its own channel; a per-job "
                "channel needs SLACK_BOT_TOKEN"
            ]
        return [
            "notifications.slack_channel: Slack is not configured on this server "
            "(a per-job channel needs SLACK_BOT_TOKEN)"
        ]


class SlackChannel:
    """Posts run transitions to Slack, by webhook or by bot token, as configured."""

    name: ClassVar[str] = "slack"
    settings_model: ClassVar[type[ChannelSettings]] = SlackSettings
    job_options_model: ClassVar[type[JobOptions]] = SlackJobOptions

    def __init__(self, settings: SlackSettings) -> None:
        self._settings = settings

    @classmethod
    def configured(cls, settings: Settings) -> SlackChannel | None:
        """The channel when Slack is configured, else None."""
        slack = SlackSettings.of(settings)
        if slack.slack_webhook_url or slack.slack_bot_token:
            return cls(slack)
        return None

    def target(self, job_channel: str | None) -> str | None:
        """The Slack channel to post to; None for a webhook, which has its own."""
        if self._settings.slack_bot_token is None:
            return None
        return job_channel or self._settings.slack_channel

    async def send(
        self, facts: RunFacts, job_options: SlackJobOptions, timeout: float
    ) -> str | None:
        """Post one message; raises DeliveryFailed with a reason safe to show."""
        text = escape(facts.plain_text())
        blocks = build_blocks(facts)
        target = self.target(job_options.slack_channel)
        await asyncio.to_thread(self._post, text, blocks, target, timeout)
        return None

    def _post(
        self, text: str, blocks: list[dict[str, Any]], target: str | None, timeout: float
    ) -> None:
        seconds = max(1, int(timeout))
        settings = self._settings
        if settings.slack_bot_token is not None:
            _post_with_bot(settings, text, blocks, target or "", seconds)
        elif settings.slack_webhook_url is not None:
            _post_to_webhook(settings.slack_webhook_url.get_secret_value(), text, blocks, seconds)


def _post_to_webhook(url: str, text: str, blocks: list[dict[str, Any]], seconds: int) -> None:
    client = WebhookClient(url, timeout=seconds, logger=_sdk_logger, retry_handlers=[])
    try:
        response = client.send(text=text, blocks=blocks, unfurl_links=False)
    except (OSError, SlackClientError) as err:
        raise DeliveryFailed(f"Slack webhook: {describe_exception(err, seconds)}") from err
    # The webhook client returns error answers instead of raising.
    if response.status_code != 200:
        raise DeliveryFailed(
            f"Slack webhook answered HTTP {response.status_code}: {response.body[:200]}"
        )


def _post_with_bot(
    settings: SlackSettings, text: str, blocks: list[dict[str, Any]], channel: str, seconds: int
) -> None:
    assert settings.slack_bot_token is not None
    base_url = settings.slack_api_url.rstrip("/") + "/"
    client = WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=base_url,
        timeout=seconds,
        logger=_sdk_logger,
        retry_handlers=[],
    )
    try:
        client.chat_postMessage(channel=channel, text=text, blocks=blocks, unfurl_links=False)
    except SlackApiError as err:
        data = err.response.data
        code = data.get("error") if isinstance(data, dict) else None
        raise DeliveryFailed(
            f"Slack chat.postMessage answered HTTP {err.response.status_code}"
            f" ({code or 'no error code'}) for channel {channel}"
        ) from err
    except (OSError, SlackClientError) as err:
        raise DeliveryFailed(f"Slack API: {describe_exception(err, seconds)}") from err


def describe_exception(err: BaseException, seconds: int) -> str:
    """A short reason for a transport error (a timeout, a refused connection)."""
    # urllib's URLError wraps the socket error in ``reason``.
    reason = getattr(err, "reason", None)
    if isinstance(err, TimeoutError) or isinstance(reason, TimeoutError):
        return f"timed out after {seconds} s without an answer"
    return f"not reached ({type(err).__name__}: {reason or err})"


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int = _SECTION_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_blocks(facts: RunFacts) -> list[dict[str, Any]]:
    """Block Kit layout: header, the facts as fields, error, log lines, link to the run."""
    emoji = STATUS_EMOJI.get(facts.status, "")
    header = _clip(f"{emoji} {facts.title}".strip(), 150)
    fields = [
        {"type": "mrkdwn", "text": _clip(f"*{label}*\n{escape(value)}", 1900)}
        for label, value in facts.fields()
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {"type": "section", "fields": fields[:10]},
    ]
    if facts.error:
        text = _clip(f"*Error*\n{escape(facts.error)}")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    if facts.log_lines:
        logs = escape(facts.log_lines)[-(_SECTION_LIMIT - 40) :]
        text = f"*Last log lines*\n```{logs}```"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    link = f"<{facts.run_url}|Open run {escape(facts.run_id)} in the Temporal UI>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link}]})
    return blocks
