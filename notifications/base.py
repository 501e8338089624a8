"""What a notification channel is: the ``Channel`` Protocol and the models it declares.

A channel owns everything about itself: which of the flat settings it reads and how they must
fit together, which secrets they hold, which options a job may set for it, and how to send.
The notify activity, the redaction, the start-up check and the per-job check only iterate
``notifications/registry.py``.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, Self, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr

from core.settings import Settings
from notifications.messages import RunFacts

# A URL path shorter than this is no secret, and redacting it would garble every detail.
_MIN_SECRET_PATH = 8


class ChannelSettings(BaseModel):
    """A channel's part of the flat ``Settings``; each field is named as in ``Settings``."""

    # A channel's settings hold secrets: an error about them must never echo a value.
    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    @classmethod
    def of(cls, settings: Settings) -> Self:
        """This channel's fields, taken from the flat settings."""
        return cls.model_validate({name: getattr(settings, name) for name in cls.model_fields})

    def problems(self) -> list[str]:
        """What does not fit together; each names variables, never values (some are secrets)."""
        return []

    def secrets(self) -> list[str]:
        """Values to redact from anything recorded or logged: every set ``SecretStr`` field."""
        values = (getattr(self, name) for name in type(self).model_fields)
        return [
            value.get_secret_value()
            for value in values
            if isinstance(value, SecretStr) and value.get_secret_value()
        ]


class JobOptions(BaseModel):
    """A channel's options in a job's ``notifications``; a channel without any uses this.

    The API's model of ``notifications`` (``jobs/fields.py``) is made of every channel's
    options (``notifications/registry.py``), so no other job field can reach a channel.
    """

    # The options of every channel arrive together; each channel reads its own.
    model_config = ConfigDict(extra="ignore")

    def problems(self, settings: Settings) -> list[str]:
        """Options this deployment cannot carry out, each naming ``notifications.<field>``."""
        return []


OptionsT = TypeVar("OptionsT", bound=JobOptions, contravariant=True)


class Channel(Protocol[OptionsT]):
    """A way to tell people about a run's status change: Slack, email, a signed webhook."""

    #: The channel's name in delivery records and API answers (``slack``).
    name: ClassVar[str]
    #: Which flat settings it reads, how they must fit together, which of them are secret.
    settings_model: ClassVar[type[ChannelSettings]]
    #: What a job may set for it in ``notifications`` (``JobOptions`` when nothing).
    job_options_model: ClassVar[type[JobOptions]]

    @classmethod
    def configured(cls, settings: Settings) -> Self | None:
        """The channel when these settings turn it on, else None."""
        ...

    async def send(self, facts: RunFacts, job_options: OptionsT, timeout: float) -> str | None:
        """Deliver one transition within ``timeout`` seconds; returns a note worth recording.

        Raises:
            DeliveryFailed: Not delivered; its reason is recorded (after redaction).
        """
        ...


def is_http_url(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def url_secrets(url: str) -> list[str]:
    """A URL that carries a token (a webhook's), and its path, which alone would reveal it."""
    path = url.split("://", 1)[-1].partition("/")[2]
    return [url, path] if len(path) >= _MIN_SECRET_PATH else [url]
