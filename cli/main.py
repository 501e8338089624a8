"""The ``orchestrator`` command: ``orchestrator jobs create|list|get|update|delete|...``.

Every command is one or a few REST calls. API errors become one line on stderr
(``error: 404 JobNotFound: Job train-x not found``) and exit code 1; usage errors exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli import curves, spec
from cli.context import JobIdArg, JsonOpt, connect
from cli.follow import watch_until_final, write_logs
from cli.render import (
    JobStatus,
    job_details,
    job_table,
    json_text,
    out,
    outcome_text,
    show_job,
    worker_table,
)
from cli.target import DEFAULT_URL, StackFileError, resolve_target

# Locals are never shown in tracebacks: they would include the API key.
app = typer.Typer(
    name="orchestrator",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
jobs_app = typer.Typer(no_args_is_help=True, help="Create, inspect and steer training jobs.")
app.add_typer(jobs_app, name="jobs")
app.command("metrics")(curves.show_metrics)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="ORCHESTRATOR_URL",
            help="Base URL of the orchestrator API.",
            show_default=f"API_HOST and API_PORT of ./.env, else {DEFAULT_URL}",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="ORCHESTRATOR_API_KEY",
            help=(
                "API key, sent as X-API-Key (needed when the API has auth on); without --url, "
                "API_KEY of ./.env."
            ),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Command-line client of the training orchestrator's REST API.

    Without --url or ORCHESTRATOR_URL it talks to the stack that ./.env describes.
    """
    if url is not None and not url.startswith(("http://", "https://")):
        raise typer.BadParameter("must start with http:// or https://", param_hint="'--url'")
    try:
        ctx.obj = resolve_target(url, api_key, Path.cwd())
    except StackFileError as err:
        raise typer.BadParameter(str(err), param_hint="'--url'") from None


@jobs_app.command("create")
def create_job(
    ctx: typer.Context,
    command: spec.CommandArg = None,
    file: spec.FileOpt = None,
    name: spec.NameOpt = None,
    image: spec.ImageOpt = None,
    schedule: spec.ScheduleOpt = None,
    max_retries: spec.MaxRetriesOpt = None,
    checkpoint_path: spec.CheckpointOpt = None,
    env: spec.EnvOpt = None,
    secret_env: spec.SecretEnvOpt = None,
    gpus: spec.GpusOpt = None,
    cpus: spec.CpusOpt = None,
    memory: spec.MemoryOpt = None,
    timeout: spec.TimeoutOpt = None,
    resume_policy: spec.ResumePolicyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a job. Without --schedule it runs once, right away.

    The command is an argv list after '--', never a shell string:
    orchestrator jobs create --name mnist --image trainer:1 -- python train.py --epochs 3
    """
    body = spec.read_body_file(file) | spec.spec_fields(
        name=name,
        image=image,
        command=command,
        schedule=schedule,
        max_retries=max_retries,
        checkpoint_path=checkpoint_path,
        env=env,
        secret_env=secret_env,
        timeout=timeout,
        resume_policy=resume_policy,
    )
    if resources := spec.resource_fields(gpus, cpus, memory):
        body["resources"] = {**(body.get("resources") or {}), **resources}
    for key, hint in (("name", "'--name'"), ("image", "'--image'"), ("command", "COMMAND")):
        if key not in body:
            raise typer.BadParameter("required (as an option or in --file)", param_hint=hint)
    with connect(ctx) as api:
        job = api.create_job(body)
    when = f"on schedule '{job['schedule']}'" if job.get("schedule") else "once, now"
    show_job(job, as_json, f"Created job {job['job_id']} ({job['name']}); it runs {when}.")


@jobs_app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: Annotated[
        JobStatus | None, typer.Option(help="Only jobs in this status.", show_default=False)
    ] = None,
    page: Annotated[int, typer.Option(min=1, help="Page number, from 1.")] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=200, help="Jobs per page.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first."""
    with connect(ctx) as api:
        result = api.list_jobs(status.value if status else None, page, page_size)
    if as_json:
        typer.echo(json_text(result))
        return
    console = out()
    if result["jobs"]:
        console.print(job_table(result["jobs"]))
    pages = max(1, -(-result["total"] // result["page_size"]))
    noun = "job" if result["total"] == 1 else "jobs"
    console.print(f"{result['total']} {noun}, page {result['page']} of {pages}", style="dim")


@jobs_app.command("get")
def get_job(ctx: typer.Context, job_id: JobIdArg, as_json: JsonOpt = False) -> None:
    """Show one job: its spec, status, retries and latest progress."""
    with connect(ctx) as api:
        job = api.get_job(job_id)
    if as_json:
        typer.echo(json_text(job))
        return
    out().print(job_details(job))


@jobs_app.command("update")
def update_job(
    ctx: typer.Context,
    job_id: JobIdArg,
    command: spec.CommandArg = None,
    file: spec.FileOpt = None,
    name: spec.NameOpt = None,
    image: spec.ImageOpt = None,
    schedule: spec.ScheduleOpt = None,
    max_retries: spec.MaxRetriesOpt = None,
    checkpoint_path: spec.CheckpointOpt = None,
    env: spec.EnvOpt = None,
    secret_env: spec.SecretEnvOpt = None,
    gpus: spec.GpusOpt = None,
    cpus: spec.CpusOpt = None,
    memory: spec.MemoryOpt = None,
    timeout: spec.TimeoutOpt = None,
    resume_policy: spec.ResumePolicyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a job: only the options given are sent. The next run uses the new spec.

    '--schedule none' makes the job a one-off; --gpus, --cpus and --memory change only
    that limit. Refused (409) while the job is running.
    """
    body = spec.read_body_file(file) | spec.spec_fields(
        name=name,
        image=image,
        command=command,
        schedule=schedule,
        max_retries=max_retries,
        checkpoint_path=checkpoint_path,
        env=env,
        secret_env=secret_env,
        timeout=timeout,
        resume_policy=resume_policy,
    )
    resources = spec.resource_fields(gpus, cpus, memory)
    if not body and not resources:
        raise typer.BadParameter("give at least one field to change")
    with connect(ctx) as api:
        if resources:
            # The API replaces `resources` whole; keep the limits the user did not mention.
            base = body["resources"] if "resources" in body else api.get_job(job_id)["resources"]
            kept = {key: value for key, value in (base or {}).items() if value is not None}
            body["resources"] = kept | resources
        job = api.update_job(job_id, body)
    show_job(job, as_json, f"Updated job {job['job_id']}.")


@jobs_app.command("delete")
def delete_job(
    ctx: typer.Context,
    job_id: JobIdArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a job, its schedule and its run records. Files on disk are kept."""
    if not yes:
        typer.confirm(f"Delete job {job_id} and its run history?", abort=True)
    with connect(ctx) as api:
        api.delete_job(job_id)
    out().print(f"Deleted job {job_id}.")


@jobs_app.command("retry")
def retry_job(ctx: typer.Context, job_id: JobIdArg, as_json: JsonOpt = False) -> None:
    """Reset a job's retries and start a new run now. Refused (409) while it is running."""
    with connect(ctx) as api:
        job = api.retry_job(job_id)
    show_job(job, as_json, f"Retrying job {job_id}: a new run starts now.", details=False)


@jobs_app.command("cancel")
def cancel_job(ctx: typer.Context, job_id: JobIdArg, as_json: JsonOpt = False) -> None:
    """Stop the job's running run (SIGTERM, then SIGKILL after a grace period).

    A scheduled job keeps its schedule. Refused (409) when nothing is running.
    """
    with connect(ctx) as api:
        job = api.cancel_job(job_id)
    show_job(job, as_json, f"Job {job_id} is {job['status']}.", details=False)


@jobs_app.command("logs")
def job_logs(
    ctx: typer.Context,
    job_id: JobIdArg,
    tail: Annotated[
        int | None, typer.Option(min=0, metavar="N", help="Only the last N lines.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output until the run ends.")
    ] = False,
) -> None:
    """Print the output of the job's latest run, every attempt included.

    With --follow, a job whose run has not started yet is waited for.
    """
    with connect(ctx) as api:
        write_logs(api, job_id, tail, follow)


@jobs_app.command("watch")
def watch_job(
    ctx: typer.Context,
    job_id: JobIdArg,
    interval: Annotated[
        float, typer.Option(min=0.1, metavar="SECONDS", help="Time between two polls.")
    ] = 2.0,
) -> None:
    """Show a live progress bar of the job's run until the job reaches a final status.

    The bar follows the trainer's PROGRESS reports (step of total, epoch, metrics).
    Exits 0 when the job completed, 1 when it failed or was cancelled.
    """
    console = out()
    with connect(ctx) as api:
        job = watch_until_final(api, job_id, console, interval)
    console.print(outcome_text(job))
    if job["status"] != "completed":
        raise typer.Exit(1)


@app.command("workers")
def list_workers(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the workers: GPUs free of total, running runs, last heartbeat."""
    with connect(ctx) as api:
        result = api.list_workers()
    if as_json:
        typer.echo(json_text(result))
        return
    console = out()
    if result["workers"]:
        console.print(worker_table(result["workers"]))
    noun = "worker" if result["total"] == 1 else "workers"
    console.print(f"{result['total']} {noun}", style="dim")
