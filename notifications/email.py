"""Email delivery over SMTP (stdlib ``smtplib`` in a thread): plain text plus HTML."""

from __future__ import annotations

import asyncio
import html
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Annotated, ClassVar, Literal

from pydantic import SecretStr, StringConstraints

from core.settings import Settings
from notifications import DeliveryFailed
from notifications.base import ChannelSettings, JobOptions
from notifications.messages import RunFacts

_NOT_ATEXT = re.compile(r"[^A-Za-z0-9.-]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class EmailSettings(ChannelSettings):
    """SMTP_*: the mail server, the login, the sender and the default recipients."""

    smtp_host: str | None
    smtp_port: int
    smtp_username: str | None
    smtp_password: SecretStr | None
    smtp_from: str | None
    smtp_to: list[str]
    smtp_security: Literal["starttls", "ssl", "none"]

    def problems(self) -> list[str]:
        problems = []
        if self.smtp_host and not (self.smtp_from and self.smtp_to):
            problems.append("SMTP_HOST needs SMTP_FROM and SMTP_TO")
        if not self.smtp_host and (self.smtp_from or self.smtp_to or self.smtp_username):
            problems.append("SMTP_FROM, SMTP_TO and SMTP_USERNAME need SMTP_HOST")
        if bool(self.smtp_username) != bool(self.smtp_password):
            problems.append("SMTP_USERNAME and SMTP_PASSWORD go together")
        addresses = [self.smtp_from or "", *self.smtp_to]
        bad = [address for address in addresses if address and not _EMAIL.match(address)]
        if bad:
            problems.append(f"not an email address in SMTP_FROM/SMTP_TO: {', '.join(bad)}")
        return problems


class EmailJobOptions(JobOptions):
    """A job's own recipients, which replace SMTP_TO."""

    email_to: (
        list[Annotated[str, StringConstraints(strip_whitespace=True, pattern=_EMAIL.pattern)]]
        | None
    ) = None

    def problems(self, settings: Settings) -> list[str]:
        if self.email_to and not EmailSettings.of(settings).smtp_host:
            return ["notifications.email_to: email is not configured on this server (SMTP_HOST)"]
        return []


class EmailChannel:
    """Mails run transitions to the job's recipients, or to SMTP_TO."""

    name: ClassVar[str] = "email"
    settings_model: ClassVar[type[ChannelSettings]] = EmailSettings
    job_options_model: ClassVar[type[JobOptions]] = EmailJobOptions

    def __init__(self, settings: EmailSettings) -> None:
        self._settings = settings

    @classmethod
    def configured(cls, settings: Settings) -> EmailChannel | None:
        """The channel when SMTP is configured, else None."""
        email = EmailSettings.of(settings)
        return cls(email) if email.smtp_host else None

    def recipients(self, job_recipients: list[str] | None) -> list[str]:
        """A job's own recipients replace SMTP_TO."""
        return list(job_recipients or self._settings.smtp_to)

    async def send(
        self, facts: RunFacts, job_options: EmailJobOptions, timeout: float
    ) -> str | None:
        """Send one message; returns a note on partly refused recipients, if any.

        Raises:
            DeliveryFailed: The server could not be reached or refused the message.
        """
        recipients = self.recipients(job_options.email_to)
        message = build_message(facts, self._settings.smtp_from or "", recipients)
        return await asyncio.to_thread(self._send, message, recipients, timeout)

    def _send(self, message: EmailMessage, recipients: list[str], timeout: float) -> str | None:
        settings = self._settings
        host = settings.smtp_host or ""
        try:
            smtp = (
                smtplib.SMTP_SSL(
                    host, settings.smtp_port, timeout=timeout, context=ssl.create_default_context()
                )
                if settings.smtp_security == "ssl"
                else smtplib.SMTP(host, settings.smtp_port, timeout=timeout)
            )
            with smtp:
                if settings.smtp_security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if settings.smtp_username and settings.smtp_password:
                    smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
                refused = smtp.send_message(message, to_addrs=recipients)
        except smtplib.SMTPAuthenticationError as err:
            raise DeliveryFailed(f"SMTP authentication failed ({err.smtp_code})") from err
        except smtplib.SMTPRecipientsRefused as err:
            raise DeliveryFailed(
                f"SMTP server refused every recipient: {_refusals(err.recipients)}"
            ) from err
        except smtplib.SMTPResponseException as err:
            reason = _decode(err.smtp_error)
            raise DeliveryFailed(f"SMTP server answered {err.smtp_code}: {reason}") from err
        except (smtplib.SMTPException, OSError) as err:
            raise DeliveryFailed(
                f"SMTP server {host}:{settings.smtp_port}: {_transport(err)}"
            ) from err
        # Some recipients got it: sending again would repeat it for them, so this is "sent".
        return f"refused by the server: {_refusals(refused)}" if refused else None


def build_message(facts: RunFacts, sender: str, recipients: list[str]) -> EmailMessage:
    """A multipart/alternative message with the same facts as text and as HTML."""
    message = EmailMessage()
    message["Subject"] = f"[training] {facts.title}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False)
    # Stable per transition, so mail clients fold a repeat delivery into the first one.
    domain = sender.rpartition("@")[2] or "localhost"
    message["Message-ID"] = (
        f"<{_NOT_ATEXT.sub('-', facts.run_id)}.{facts.event.replace('#', '.')}@{domain}>"
    )
    message.set_content(facts.plain_text())
    message.add_alternative(build_html(facts), subtype="html")
    return message


def build_html(facts: RunFacts) -> str:
    """The HTML part: a table of the facts, the error, the log lines and the link."""
    rows = "".join(
        f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in facts.fields()
    )
    parts = [f"<h2>{html.escape(facts.title)}</h2>", f"<table>{rows}</table>"]
    if facts.error:
        parts.append(f"<p><strong>Error:</strong> {html.escape(facts.error)}</p>")
    if facts.log_lines:
        parts.append(
            f"<p><strong>Last log lines:</strong></p><pre>{html.escape(facts.log_lines)}</pre>"
        )
    url = html.escape(facts.run_url, quote=True)
    parts.append(
        f'<p><a href="{url}">Open run {html.escape(facts.run_id)} in the Temporal UI</a></p>'
    )
    return "<html><body>" + "".join(parts) + "</body></html>"


def _decode(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(
        f"{addr} ({code} {_decode(reason)})" for addr, (code, reason) in refused.items()
    )


def _transport(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "timed out"
    return f"{type(err).__name__}: {err}"
