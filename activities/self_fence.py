"""Self-fencing: a worker cut off from Temporal or the database stops its own trainers.

A worker not seen for WORKER_LOST_SECONDS loses its leases, and a run whose host stays
unreachable for HOST_LOST_SECONDS is placed again elsewhere (``workflows/admission.py``). In a
partition that host is not frozen: its worker and its trainers run on, unseen. So the worker
fences itself first: when its registration has not been renewed
(``supervision/worker_registry.py``: Temporal answered and the database took its heartbeat)
for the self-fence deadline (SELF_FENCE_SECONDS, by default half of the smaller of those two),
it stops every running training unit of this deployment on its engine,
gracefully (STOP_GRACE_SECONDS, so the trainer can write a checkpoint), and removes it. Until
it has renewed again it starts and reattaches to nothing: attempt activities fail with the
retryable ``SelfFenced`` error, which is never counted (neither as an infrastructure failure
nor as a training retry). An attempt whose unit the fence stopped ends the same way, without
recording an exit. Once renewed, a retry of the attempt on this host starts a new unit from
the latest checkpoint; if the run was placed again meanwhile, its epoch check stops it first.

Only units running when the fence trips are stopped: a unit that had exited is left to its
attempt (its exit is the trainer's own) and to the worker's clean-up.
"""

from __future__ import annotations

import asyncio
import logging
import time

from temporalio.exceptions import ApplicationError

from runtimes.base import LABEL_DEPLOYMENT, ContainerRuntime
from workflows.models import SELF_FENCED

logger = logging.getLogger(__name__)


class SelfFence:
    """One worker's right to run training units, lost after ``deadline`` s without renewal."""

    def __init__(
        self, runtime: ContainerRuntime, deployment: str, deadline: float, grace_seconds: float
    ) -> None:
        self._runtime = runtime
        self._deployment = deployment
        self.deadline = deadline
        self._grace = grace_seconds
        self._renewed = time.monotonic()
        self.fenced = False
        # One more at each fence: an attempt compares it with the value at its start.
        self.generation = 0
        # Units still to stop (the engine did not answer): the fence holds until they are.
        self._pending = False
        self._lock = asyncio.Lock()

    def tripped_since(self, generation: int) -> bool:
        """Whether the fence is up, or has been since ``generation`` was read."""
        return self.fenced or self.generation != generation

    def refuse_if_fenced(self) -> None:
        """Raise the retryable, uncounted ``SelfFenced`` error while the fence is up."""
        if self.fenced:
            raise self.error()

    def error(self) -> ApplicationError:
        return ApplicationError(
            "this worker could not renew its registration for "
            f"{self.deadline:g} s (cut off from Temporal or the database): it stopped its "
            "training containers, and the attempt starts again from its latest checkpoint "
            "once the worker is back",
            type=SELF_FENCED,
        )

    async def renewed(self) -> None:
        """The registration was renewed: lift the fence, once its units are all stopped."""
        async with self._lock:
            self._renewed = time.monotonic()
            if self.fenced and not self._pending:
                self.fenced = False
                logger.warning("registration renewed: this worker runs training units again")

    async def check(self) -> None:
        """Trip the fence if the renewal is overdue; stop the units it has not stopped yet."""
        async with self._lock:
            overdue = time.monotonic() - self._renewed
            if not self.fenced and overdue > self.deadline:
                self.fenced = True
                self._pending = True
                self.generation += 1
                logger.warning(
                    "no renewal of this worker's registration for %.1f s (deadline %g s): "
                    "stopping its training units before its runs are placed elsewhere",
                    overdue,
                    self.deadline,
                )
            if self._pending:
                self._pending = not await self._stop_units()

    async def run_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Exception as err:  # the next tick tries again
                logger.warning("self-fence check failed: %s", err)

    async def _stop_units(self) -> bool:
        """Stop and remove every running unit of this deployment; True if all are gone."""
        try:
            units = [
                name
                for name, labels, running in await self._runtime.list_units()
                if running and labels.get(LABEL_DEPLOYMENT) == self._deployment
            ]
        except Exception as err:  # the engine is away too: try again at the next tick
            logger.warning("self-fence cannot list units: %s", err)
            return False
        results = await asyncio.gather(*(self._stop(name) for name in units))
        return all(results)

    async def _stop(self, name: str) -> bool:
        try:
            code = await self._runtime.stop(name, self._grace)
            await self._runtime.remove(name)
        except Exception as err:
            logger.warning("self-fence cannot stop %s: %s", name, err)
            return False
        logger.warning("self-fence stopped %s (exit code %s)", name, code)
        return True
