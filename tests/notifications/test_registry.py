"""The registry is the one list every part reads: these check that nothing escapes it."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import SecretStr

from core.settings import Settings
from jobs.fields import NotificationSettings
from notifications.registry import CHANNELS, configured_channels, redact, secret_values

# Settings that turn every channel on, each secret distinct and recognisable.
EVERY_CHANNEL = {
    "slack_webhook_url": "https://hooks.slack.example/services/T0/B0/slack-path-secret",
    "smtp_host": "mail.example.com",
    "smtp_username": "orchestrator",
    "smtp_password": "smtp-password-secret",
    "smtp_from": "orchestrator@example.com",
    "smtp_to": ["ops@example.com"],
    "webhook_url": "https://receiver.example/hooks/webhook-path-secret",
    "webhook_secret": "webhook-signing-secret",
}


def test_channel_names_are_unique() -> None:
    names = [channel.name for channel in CHANNELS]
    assert len(set(names)) == len(names) == 3


def test_a_job_may_set_every_channels_options_and_nothing_else() -> None:
    expected = {"events"} | {
        field for channel in CHANNELS for field in channel.job_options_model.model_fields
    }
    assert set(NotificationSettings.model_fields) == expected
    assert NotificationSettings.model_config.get("extra") == "forbid"


def test_every_channel_turns_on_from_its_settings() -> None:
    settings = Settings.model_validate(EVERY_CHANNEL)
    assert [channel.name for channel in configured_channels(settings)] == [
        "slack",
        "email",
        "webhook",
    ]
    assert configured_channels(Settings.model_validate({})) == []


API_KEY_SETTINGS = {"api_key", "api_keys"}


def test_every_secret_setting_is_a_channels_and_secret_there_too() -> None:
    def secret(annotation: Any) -> bool:
        return annotation is SecretStr or SecretStr in get_args(annotation)

    secret_settings = {
        name for name, field in Settings.model_fields.items() if secret(field.annotation)
    }
    owned = {
        name: field
        for channel in CHANNELS
        for name, field in channel.settings_model.model_fields.items()
    }
    # The API's own keys (API_KEY, API_KEYS) are no channel's; every other one is redacted by
    # its channel.
    assert secret_settings - set(owned) == API_KEY_SETTINGS
    assert all(secret(owned[name].annotation) for name in secret_settings - API_KEY_SETTINGS)


def test_every_notification_secret_is_redacted() -> None:
    settings = Settings.model_validate(EVERY_CHANNEL)
    # Every SecretStr setting but the API's own keys belongs to a channel.
    secrets = [
        value.get_secret_value()
        for name in Settings.model_fields
        if name not in API_KEY_SETTINGS
        and isinstance(value := getattr(settings, name), SecretStr)
        and value
    ]
    assert len(secrets) == 4
    text = " / ".join(secrets) + " / services/T0/B0/slack-path-secret / hooks/webhook-path-secret"
    redacted = redact(text, settings)
    assert redacted == " / ".join(["[redacted]"] * 6), redacted
    assert secret_values(settings) == sorted(secret_values(settings), key=len, reverse=True)
