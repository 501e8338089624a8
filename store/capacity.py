"""Capacity in SQL: workers' inventories, exclusive GPU leases and the queue of waiting runs.

A GPU is leased by inserting its ``(host, gpu)`` row in ``gpu_leases``, whose primary key no
two transactions can both insert: that, not any process's memory, is what keeps two attempts
off one GPU across API replicas and workers. Admissions are also serialized on the rows of
the live workers (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite has one writer at a time,
taken by the first write of the transaction), so CPUs and memory are counted exactly too.

Each new lease bumps the run's ``placement_epoch``: a copy of the run started under an older
epoch (on a host taken for lost) is stale, and ``store/fencing.py`` keeps what it reports out.

A lease lives until its run gives it back, its run is over (a workflow terminated behind the
orchestrator's back) or its run is placed again (a new lease, under the next epoch). A worker
that has not renewed its registration for ``lost_after`` takes no new runs, but its leases
stay: a host frozen for a while may come back with its containers still training on those
GPUs, so they are not leased to another run until their own run is placed elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import GpuLease, Job, QueuedRun, Run, RunLease, WorkerHost
from workflows.models import JobStatus

_FINAL = [status.value for status in JobStatus if status.is_final]
# The most queue rows ahead of a run that one admission reads.
_QUEUE_SCAN = 10_000
_ADMIT_TRIES = 10
ALL_GPUS = -1


@dataclass(frozen=True)
class Need:
    """What a run asks for: GPUs (``ALL_GPUS`` for every GPU of one worker), CPUs, bytes."""

    gpus: int = 0
    cpus: float = 0.0
    memory_bytes: int = 0

    @property
    def wants_gpus(self) -> bool:
        return self.gpus != 0

    @property
    def is_empty(self) -> bool:
        return not self.gpus and not self.cpus and not self.memory_bytes

    def describe(self) -> str:
        parts = []
        if self.gpus == ALL_GPUS:
            parts.append("all GPUs of one worker")
        elif self.gpus:
            parts.append(f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}")
        if self.cpus:
            parts.append(f"{self.cpus:g} CPUs")
        if self.memory_bytes:
            parts.append(f"{_gib(self.memory_bytes)} memory")
        return ", ".join(parts) or "nothing"


@dataclass(frozen=True)
class Placement:
    """A lease on one worker, or why the run waits and how many runs are ahead of it."""

    admitted: bool
    host: str | None = None
    task_queue: str | None = None
    gpus: list[str] = field(default_factory=list)
    reason: str | None = None
    position: int | None = None
    # Free GPUs left on live workers after this lease: the runs behind may start too.
    spare_gpus: int = 0
    # The run's placement epoch: one more at each new lease, the same for a lease kept.
    epoch: int | None = None


@dataclass(frozen=True)
class Released:
    """What a release gave back, which decides how many waiting runs to wake."""

    gpus: int = 0
    cpus_or_memory: bool = False


@dataclass
class HostUsage:
    """One live worker and what its leases hold."""

    worker: WorkerHost
    gpus_used: set[str] = field(default_factory=set)
    cpus_used: float = 0.0
    memory_used: int = 0
    runs: list[str] = field(default_factory=list)

    @property
    def free_gpus(self) -> list[str]:
        return sorted((g for g in self.worker.gpus if g not in self.gpus_used), key=_natural)

    def gpus_for(self, need: Need) -> int:
        return len(self.worker.gpus) if need.gpus == ALL_GPUS else need.gpus

    def could_ever_fit(self, need: Need) -> bool:
        worker = self.worker
        if need.gpus == ALL_GPUS and not worker.gpus:
            return False
        return (
            self.gpus_for(need) <= len(worker.gpus)
            and need.cpus <= worker.cpus
            and need.memory_bytes <= worker.memory_bytes
        )

    def fits_now(self, need: Need) -> bool:
        return (
            self.could_ever_fit(need)
            and self.gpus_for(need) <= len(self.free_gpus)
            and need.cpus <= self.worker.cpus - self.cpus_used + 1e-9
            and need.memory_bytes <= self.worker.memory_bytes - self.memory_used
        )


async def register_worker(
    session: AsyncSession,
    *,
    name: str,
    pool: str,
    task_queue: str,
    gpus: Sequence[str],
    cpus: float,
    memory_bytes: int,
    max_attempts: int,
    now: datetime,
) -> None:
    """Record (or replace) a worker's inventory; it counts as seen now."""
    row = await session.get(WorkerHost, task_queue)
    if row is None:
        row = WorkerHost(task_queue=task_queue, started_at=now)
        session.add(row)
    row.name = name
    row.pool = pool
    row.gpus = list(gpus)
    row.cpus = cpus
    row.memory_bytes = memory_bytes
    row.max_attempts = max_attempts
    row.started_at = now
    row.last_seen_at = now
    await session.commit()


async def heartbeat_worker(session: AsyncSession, task_queue: str, now: datetime) -> bool:
    """Renew a worker's registration; False if its row is gone (register again)."""
    result = await session.execute(
        update(WorkerHost).where(WorkerHost.task_queue == task_queue).values(last_seen_at=now)
    )
    await session.commit()
    return bool(getattr(result, "rowcount", 0))


async def host_usage(
    session: AsyncSession, pool: str, now: datetime, lost_after: timedelta, *, lock: bool = False
) -> list[HostUsage]:
    """Every live worker of ``pool`` (seen within ``lost_after``) and what its host's leases
    hold (a host's GPUs are its own whichever deployment leased them)."""
    query = (
        select(WorkerHost)
        .where(WorkerHost.pool == pool, WorkerHost.last_seen_at >= now - lost_after)
        .order_by(WorkerHost.task_queue)
    )
    if lock:
        query = query.with_for_update()
    hosts = {worker.name: HostUsage(worker) for worker in await session.scalars(query)}
    for lease in await session.scalars(select(RunLease).where(RunLease.host.in_(hosts))):
        usage = hosts[lease.host]
        usage.gpus_used.update(lease.gpus)
        usage.cpus_used += lease.cpus
        usage.memory_used += lease.memory_bytes
        usage.runs.append(lease.run_id)
    return list(hosts.values())


async def list_workers(
    session: AsyncSession, pool: str, now: datetime, lost_after: timedelta
) -> list[tuple[WorkerHost, HostUsage | None]]:
    """Every registered worker of ``pool``, live or not, with its usage when it is live."""
    live = {
        usage.worker.task_queue: usage for usage in await host_usage(session, pool, now, lost_after)
    }
    workers = await session.scalars(
        select(WorkerHost).where(WorkerHost.pool == pool).order_by(WorkerHost.name)
    )
    return [(worker, live.get(worker.task_queue)) for worker in workers]


async def admit(
    session: AsyncSession,
    *,
    pool: str,
    job_id: str,
    run_id: str,
    need: Need,
    now: datetime,
    lost_after: timedelta,
) -> Placement:
    """Lease ``need`` for the run on the best-fitting live worker, or queue it with a reason.

    Idempotent: a run that holds a live lease gets it back. Runs wait in order (priority,
    then start time), each kind in its own line: GPU runs never hold back CPU-only ones.
    Within a line the head is served first (no run behind it takes what it waits for), except
    that a run no live worker could ever hold does not block the line.
    """
    for _ in range(_ADMIT_TRIES):
        try:
            return await _admit_once(session, pool, job_id, run_id, need, now, lost_after)
        except IntegrityError:
            # Another admission took a GPU between our read and our insert: read again.
            await session.rollback()
    return Placement(admitted=False, reason=f"waiting for {need.describe()}; leases contended")


async def _admit_once(
    session: AsyncSession,
    pool: str,
    job_id: str,
    run_id: str,
    need: Need,
    now: datetime,
    lost_after: timedelta,
) -> Placement:
    # The first statement writes: SQLite then holds its one writer's lock for the whole
    # admission (a read first would leave the reads outside the transaction).
    touched = await session.execute(
        update(Run).where(Run.run_id == run_id).values(updated_at=Run.updated_at)
    )
    if not getattr(touched, "rowcount", 0):
        await session.rollback()
        return Placement(admitted=False, reason="the run is gone")
    hosts = await host_usage(session, pool, now, lost_after, lock=True)
    await _expire(session)
    hosts = await host_usage(session, pool, now, lost_after)
    lease = await session.get(RunLease, run_id)
    if lease is not None:
        by_name = {usage.worker.name: usage for usage in hosts}
        if lease.host in by_name:
            epoch = await session.scalar(select(Run.placement_epoch).where(Run.run_id == run_id))
            await session.commit()
            return Placement(
                admitted=True,
                host=lease.host,
                task_queue=by_name[lease.host].worker.task_queue,
                gpus=list(lease.gpus),
                epoch=epoch,
            )
        # Its host is not alive: the run is placed again, and only now (under the next
        # epoch, which fences the copy left there) are that host's GPUs given back.
        await session.execute(delete(GpuLease).where(GpuLease.run_id == run_id))
        await session.execute(delete(RunLease).where(RunLease.run_id == run_id))
        await session.flush()
    run = await session.get(Run, run_id)
    job = await session.get(Job, job_id)
    assert run is not None
    waiting = await session.get(QueuedRun, run_id)
    if waiting is None:
        waiting = QueuedRun(
            run_id=run_id,
            job_id=job_id,
            pool=pool,
            priority=job.priority if job is not None else 0,
            submitted_at=run.started_at,
            gpus=need.gpus,
            cpus=need.cpus,
            memory_bytes=need.memory_bytes,
        )
        session.add(waiting)
        await session.flush()
    ahead = await _runs_ahead(session, waiting, hosts)
    candidates = [usage for usage in hosts if usage.fits_now(need)]
    if ahead == 0 and candidates:
        return await _lease(session, run, job, need, candidates, now)
    reason = _reason(need, hosts, ahead)
    waiting.reason = reason
    run.queue_reason = reason
    if not JobStatus(run.status).is_final:
        run.status = JobStatus.QUEUED.value
        if job is not None and job.latest_run_id == run_id:
            job.status = JobStatus.QUEUED.value
    await session.commit()
    return Placement(admitted=False, reason=reason, position=ahead + 1)


async def _lease(
    session: AsyncSession,
    run: Run,
    job: Job | None,
    need: Need,
    candidates: list[HostUsage],
    now: datetime,
) -> Placement:
    # Best fit: the worker left with the fewest free GPUs, so whole workers stay free for
    # runs that need them.
    best = min(
        candidates,
        key=lambda usage: (
            len(usage.free_gpus) - usage.gpus_for(need),
            usage.worker.cpus - usage.cpus_used - need.cpus,
            usage.worker.name,
        ),
    )
    gpus = best.free_gpus[: best.gpus_for(need)]
    host = best.worker.name
    session.add(
        RunLease(
            run_id=run.run_id,
            job_id=run.job_id,
            host=host,
            gpus=gpus,
            cpus=need.cpus,
            memory_bytes=need.memory_bytes,
            leased_at=now,
        )
    )
    await session.flush()
    session.add_all(GpuLease(host=host, gpu=gpu, run_id=run.run_id, leased_at=now) for gpu in gpus)
    await session.flush()
    await session.execute(delete(QueuedRun).where(QueuedRun.run_id == run.run_id))
    run.host = host
    run.gpus = gpus
    # A new placement fences every copy of the run started before it.
    run.placement_epoch = epoch = (run.placement_epoch or 0) + 1
    run.queue_reason = None
    if run.status == JobStatus.QUEUED.value:
        run.status = JobStatus.RUNNING.value
        if job is not None and job.latest_run_id == run.run_id:
            job.status = JobStatus.RUNNING.value
    await session.commit()
    spare = sum(len(usage.free_gpus) for usage in candidates) - len(gpus)
    return Placement(
        admitted=True,
        host=host,
        task_queue=best.worker.task_queue,
        gpus=gpus,
        spare_gpus=spare,
        epoch=epoch,
    )


async def release(session: AsyncSession, run_id: str) -> Released:
    """Give back everything the run holds or waits for (idempotent)."""
    lease = await session.get(RunLease, run_id)
    released = Released()
    if lease is not None:
        released = Released(len(lease.gpus), bool(lease.cpus or lease.memory_bytes))
    await session.execute(delete(GpuLease).where(GpuLease.run_id == run_id))
    await session.execute(delete(RunLease).where(RunLease.run_id == run_id))
    await session.execute(delete(QueuedRun).where(QueuedRun.run_id == run_id))
    await session.commit()
    return released


async def next_in_queue(
    session: AsyncSession,
    pool: str,
    gpu_runs: int,
    other_runs: int,
    now: datetime,
    lost_after: timedelta,
) -> list[str]:
    """The first waiting runs of the GPU line and of the other line, in order, leaving out
    runs that no live worker could ever hold (they do not block their line either)."""
    hosts = await host_usage(session, pool, now, lost_after)
    found: list[str] = []
    for gpu_line, limit in ((True, gpu_runs), (False, other_runs)):
        if limit <= 0:
            continue
        query = (
            select(QueuedRun)
            .where(QueuedRun.pool == pool)
            .where(QueuedRun.gpus != 0 if gpu_line else QueuedRun.gpus == 0)
            .order_by(QueuedRun.priority.desc(), QueuedRun.submitted_at, QueuedRun.run_id)
            .limit(_QUEUE_SCAN)
        )
        line = [
            row.run_id
            for row in await session.scalars(query)
            if any(u.could_ever_fit(Need(row.gpus, row.cpus, row.memory_bytes)) for u in hosts)
        ]
        found.extend(line[:limit])
    return found


async def queue_positions(session: AsyncSession, run_ids: Sequence[str]) -> dict[str, int]:
    """1 for the next run of its line, 2 for the one after, ...; runs not waiting are absent."""
    if not run_ids:
        return {}
    waiting = (await session.scalars(select(QueuedRun).where(QueuedRun.run_id.in_(run_ids)))).all()
    positions: dict[str, int] = {}
    for row in waiting:
        same_line = QueuedRun.gpus != 0 if row.gpus != 0 else QueuedRun.gpus == 0
        ahead = await session.scalar(
            select(func.count())
            .select_from(QueuedRun)
            .where(QueuedRun.pool == row.pool, same_line, _earlier_than(row))
        )
        positions[row.run_id] = int(ahead or 0) + 1
    return positions


def _earlier_than(row: QueuedRun) -> ColumnElement[bool]:
    """Queue rows ahead of ``row``: higher priority, then earlier start, then run id."""
    return or_(
        QueuedRun.priority > row.priority,
        (QueuedRun.priority == row.priority) & (QueuedRun.submitted_at < row.submitted_at),
        (QueuedRun.priority == row.priority)
        & (QueuedRun.submitted_at == row.submitted_at)
        & (QueuedRun.run_id < row.run_id),
    )


async def _expire(session: AsyncSession) -> None:
    """Drop leases and queue places of runs that are over.

    Leases on lost hosts stay (see the module's docstring): a lost host's GPUs are not
    offered to anyone (it is not alive), and when it returns they are still its runs'."""
    over = select(Run.run_id).where(Run.status.in_(_FINAL))
    await session.execute(delete(GpuLease).where(GpuLease.run_id.in_(over)))
    await session.execute(delete(RunLease).where(RunLease.run_id.in_(over)))
    await session.execute(delete(QueuedRun).where(QueuedRun.run_id.in_(over)))


async def _runs_ahead(session: AsyncSession, waiting: QueuedRun, hosts: list[HostUsage]) -> int:
    """Runs of the same line ahead of ``waiting`` that some live worker could ever hold."""
    same_line = QueuedRun.gpus != 0 if waiting.gpus != 0 else QueuedRun.gpus == 0
    earlier = _earlier_than(waiting)
    rows = await session.scalars(
        select(QueuedRun)
        .where(QueuedRun.pool == waiting.pool, same_line, earlier)
        .where(QueuedRun.run_id != waiting.run_id)
        .limit(_QUEUE_SCAN)
    )
    return sum(
        1
        for row in rows
        if any(usage.could_ever_fit(Need(row.gpus, row.cpus, row.memory_bytes)) for usage in hosts)
    )


def _reason(need: Need, hosts: list[HostUsage], ahead: int) -> str:
    wanted = f"waiting for {need.describe()}"
    if not hosts:
        return f"{wanted}; no worker is registered and alive"
    if not any(usage.could_ever_fit(need) for usage in hosts):
        largest = max(hosts, key=lambda usage: (len(usage.worker.gpus), usage.worker.cpus))
        worker = largest.worker
        return (
            f"{wanted}; no registered worker has that much (the largest, {worker.name}, has "
            f"{len(worker.gpus)} GPUs, {worker.cpus:g} CPUs, {_gib(worker.memory_bytes)} memory)"
        )
    shown = sorted(hosts, key=lambda usage: -len(usage.free_gpus))[:3]
    if need.wants_gpus:
        free = ", ".join(
            f"{u.worker.name} has {len(u.free_gpus)} of {len(u.worker.gpus)} free" for u in shown
        )
    else:
        free = ", ".join(
            f"{u.worker.name} has {max(u.worker.cpus - u.cpus_used, 0):g} of "
            f"{u.worker.cpus:g} CPUs free"
            for u in shown
        )
    if len(hosts) > len(shown):
        free += f" (and {len(hosts) - len(shown)} more workers)"
    if ahead:
        return f"{wanted} behind {ahead} earlier run{'s' if ahead != 1 else ''}; {free}"
    return f"{wanted}; {free}"


def _gib(size: int) -> str:
    return f"{size / 1024**3:.3g} GiB"


def _natural(gpu: str) -> tuple[int, int | str]:
    return (0, int(gpu)) if re.fullmatch(r"\d+", gpu) else (1, gpu)
