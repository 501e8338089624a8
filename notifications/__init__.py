"""Notifications of run status changes: Slack, email and signed webhooks.

The notify activity (``activities/notify.py``) gathers the facts of a transition and drives
the channels listed in ``registry.py``; channels receive facts, never the store. ``base.py``
says what a channel is. This module stays free of Slack, SMTP and HTTP imports.
"""

from __future__ import annotations

REDACTED = "[redacted]"


class DeliveryFailed(Exception):
    """A channel did not take the message; ``reason`` is safe to record and show.

    ``retryable`` is False when sending the same message again cannot help (a webhook's
    receiver refused it with a 4xx): the notify activity then records it and does not retry.
    """

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
