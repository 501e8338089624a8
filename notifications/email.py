"""Email delivery over SMTP (stdlib ``smtplib`` in a thread): plain text plus HTML."""

from __future__ import annotations

import asyncio
import html
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from core.settings import Settings
from notifications import DeliveryFailed
from notifications.messages import RunFacts

_NOT_ATEXT = re.compile(r"[^A-Za-z0-9.-]")


class EmailChannel:
    """Mails run transitions to the job's recipients, or to SMTP_TO."""

    name = "email"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @classmethod
    def configured(cls, settings: Settings) -> EmailChannel | None:
        """The channel when SMTP is configured, else None."""
        return cls(settings) if settings.smtp_host else None

    def recipients(self, job_recipients: list[str] | None) -> list[str]:
        """A job's own recipients replace SMTP_TO."""
        return list(job_recipients or self._settings.smtp_to)

    async def send(self, facts: RunFacts, recipients: list[str], timeout: float) -> str | None:
        """Send one message; returns a note on partly refused recipients, if any.

        Raises:
            DeliveryFailed: The server could not be reached or refused the message.
        """
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
