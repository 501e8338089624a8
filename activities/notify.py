"""The activity that tells people about a run's status changes (every configured channel).

The workflow bounds this activity's total time (``NOTIFY_TIMEOUT_SECONDS``) and ignores its
failure, so an outage of Slack, mail or a webhook's receiver never changes a run's outcome.
Within that bound a failed channel is retried by Temporal; channels already recorded as sent
are skipped. A channel whose receiver refused the message for good (a webhook's 4xx) is
recorded as failed without asking for a retry.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.settings import Settings
from jobs.fields import NotificationSettings
from notifications import DeliveryFailed
from notifications.base import Channel
from notifications.messages import RunFacts, describe_progress, split_error
from notifications.registry import configured_channels, redact
from store import jobs as job_store
from store import runs as run_store
from store.deliveries import DeliveryStatus, already_sent, record_delivery
from store.models import Job, Run
from workflows.models import NOTIFY_RUN_STATUS, RunStatusUpdate

NOTIFICATION_FAILED = "NotificationFailed"
# Part of the remaining time a single send may use, so its failure is still recorded in time.
_SHARE_OF_TIME_LEFT = 0.8
_MIN_SEND_SECONDS = 0.5

# What became of one channel's delivery: taken, worth another try, or refused for good.
Outcome = Literal["sent", "retry", "refused"]


class NotifyActivities:
    """Holds the worker's session factory, its settings and the channels they turn on."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._channels = configured_channels(settings)

    @activity.defn(name=NOTIFY_RUN_STATUS)
    async def notify_run_status(self, update: RunStatusUpdate) -> None:
        """Send the transition to every configured channel that wants it, once per channel.

        Raises:
            ApplicationError: Some channel failed in a way another try may mend; Temporal
                retries the activity, which then sends only to the channels not yet recorded
                as sent.
        """
        async with self._sessions() as session:
            job = await job_store.find_job(session, update.job_id)
            run = await run_store.find_run(session, update.run_id)
        if job is None or run is None:
            activity.logger.info("run %s is gone; no notification", update.run_id)
            return
        prefs = _job_preferences(job)
        events = prefs.events if prefs.events is not None else self._settings.notify_on
        if update.status not in events or not self._channels:
            return
        facts = build_facts(update, job, run, self._settings)
        budget = self._send_budget()
        routing = prefs.model_dump()
        outcomes = await asyncio.gather(
            *(
                self._deliver(job.job_id, facts, channel, routing, budget)
                for channel in self._channels
            )
        )
        failed = [
            channel.name
            for channel, outcome in zip(self._channels, outcomes, strict=True)
            if outcome == "retry"
        ]
        if failed:
            raise ApplicationError(
                f"{facts.event} of run {facts.run_id} not delivered to {', '.join(failed)}",
                type=NOTIFICATION_FAILED,
            )

    async def _deliver(
        self,
        job_id: str,
        facts: RunFacts,
        channel: Channel[Any],
        routing: dict[str, Any],
        budget: float,
    ) -> Outcome:
        """Send on one channel unless already sent; record the outcome."""
        async with self._sessions() as session:
            if await already_sent(session, facts.run_id, facts.event, channel.name):
                return "sent"
        outcome: Outcome = "retry"
        try:
            options = channel.job_options_model.model_validate(routing)
            # The clients have socket timeouts too; this bounds the whole exchange.
            note = await asyncio.wait_for(channel.send(facts, options, budget), timeout=budget)
        except DeliveryFailed as err:
            detail: str | None = redact(err.reason, self._settings)
            outcome = "retry" if err.retryable else "refused"
        except TimeoutError:
            detail = f"timed out after {budget:.1f} s without an answer"
        except Exception as err:
            # An error no client documents must still be recorded, and retried, not lost.
            detail = redact(f"unexpected {type(err).__name__}: {err}", self._settings)
        else:
            note = redact(note, self._settings) if note else None
            await self._record(job_id, facts, channel.name, "sent", note)
            activity.logger.info("%s of run %s sent to %s", facts.event, facts.run_id, channel.name)
            return "sent"
        await self._record(job_id, facts, channel.name, "failed", detail)
        activity.logger.warning(
            "%s of run %s not sent to %s%s: %s",
            facts.event,
            facts.run_id,
            channel.name,
            "" if outcome == "retry" else " (refused; not retried)",
            detail,
        )
        return outcome

    async def _record(
        self,
        job_id: str,
        facts: RunFacts,
        channel: str,
        status: DeliveryStatus,
        detail: str | None,
    ) -> None:
        async with self._sessions() as session:
            await record_delivery(
                session,
                job_id=job_id,
                run_id=facts.run_id,
                event=facts.event,
                channel=channel,
                status=status,
                detail=detail,
            )

    def _send_budget(self) -> float:
        """Seconds one send may take: NOTIFY_TIMEOUT_SECONDS, less near the total bound."""
        budget = self._settings.notify_timeout_seconds
        info = activity.info()
        if info.schedule_to_close_timeout:
            deadline = info.scheduled_time + info.schedule_to_close_timeout
            left = (deadline - datetime.now(UTC)).total_seconds()
            budget = min(budget, left * _SHARE_OF_TIME_LEFT)
        return max(budget, _MIN_SEND_SECONDS)


def _job_preferences(job: Job) -> NotificationSettings:
    """The job's routing; a stored value that no longer validates falls back to the defaults."""
    try:
        return NotificationSettings.model_validate(job.notifications or {})
    except ValidationError:
        activity.logger.warning("job %s has unreadable notification settings", job.job_id)
        return NotificationSettings()


def build_facts(update: RunStatusUpdate, job: Job, run: Run, settings: Settings) -> RunFacts:
    """Gather the facts of ``update`` from the job and run records and the settings."""
    error, log_lines = split_error(update.error_message)
    final = update.status in ("completed", "failed", "cancelled")
    return RunFacts(
        job_id=job.job_id,
        job_name=job.name,
        run_id=update.run_id,
        status=update.status,
        attempt=update.attempt,
        # A run's spec cannot change while it runs (PUT answers 409), so this is the run's.
        attempts_allowed=job.max_retries + 1,
        duration=max(update.at - run.started_at, timedelta(0)) if final else None,
        exit_code=update.exit_code,
        error=error if update.status in ("retrying", "failed", "cancelled") else None,
        log_lines=log_lines if update.status in ("retrying", "failed") else None,
        progress=describe_progress(run.progress) if update.status == "completed" else None,
        run_url=settings.run_ui_url(update.run_id),
        occurred_at=update.at,
        started_at=run.started_at,
    )
