"""The job-spec options shared by ``jobs create`` and ``jobs update``, and the body they build."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

NONE = "none"


class ResumePolicy(StrEnum):
    RETRIES = "retries"
    ALWAYS = "always"
    NEVER = "never"


_SPEC = "Job spec"

FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        help="JSON file with the request body ('-' reads stdin); options given override it.",
        rich_help_panel=_SPEC,
    ),
]
NameOpt = Annotated[str | None, typer.Option(help="Job name, unique.", rich_help_panel=_SPEC)]
ImageOpt = Annotated[
    str | None, typer.Option(help="Container image to run.", rich_help_panel=_SPEC)
]
CommandArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="COMMAND",
        help="The command (argv, never run through a shell), after '--'.",
        show_default=False,
    ),
]
ScheduleOpt = Annotated[
    str | None,
    typer.Option(
        help="Five-field cron in the job's timezone, e.g. '0 2 * * *'; 'none' makes a one-off job.",
        rich_help_panel=_SPEC,
    ),
]
MaxRetriesOpt = Annotated[
    int | None, typer.Option(help="Retries after a failed attempt (0-100).", rich_help_panel=_SPEC)
]
CheckpointOpt = Annotated[
    str | None,
    typer.Option(help="Absolute checkpoint directory inside the run.", rich_help_panel=_SPEC),
]
EnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--env",
        "-e",
        metavar="KEY=VALUE",
        help="Environment variable (repeatable); replaces the job's whole env on update.",
        rich_help_panel=_SPEC,
    ),
]
SecretEnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--secret-env",
        metavar="NAME",
        help="Variable passed on from the worker's environment (repeatable).",
        rich_help_panel=_SPEC,
    ),
]
GpusOpt = Annotated[
    str | None,
    typer.Option(metavar="N|all", help="GPUs for the run.", rich_help_panel=_SPEC),
]
CpusOpt = Annotated[float | None, typer.Option(help="CPU limit, e.g. 1.5.", rich_help_panel=_SPEC)]
MemoryOpt = Annotated[
    str | None, typer.Option(help="Memory limit, e.g. 4g or 512m.", rich_help_panel=_SPEC)
]
TimeoutOpt = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="Time limit of one attempt; 'none' removes it.",
        rich_help_panel=_SPEC,
    ),
]
ResumePolicyOpt = Annotated[
    ResumePolicy | None,
    typer.Option(help="When a run resumes from the latest checkpoint.", rich_help_panel=_SPEC),
]


def read_body_file(path: Path | None) -> dict[str, Any]:
    """The JSON object in ``path`` (stdin for ``-``); a usage error if it is anything else."""
    if path is None:
        return {}
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        body = json.loads(text)
    except (OSError, ValueError) as err:
        raise typer.BadParameter(str(err), param_hint="'--file'") from err
    if not isinstance(body, dict):
        raise typer.BadParameter("must hold a JSON object", param_hint="'--file'")
    return body


def spec_fields(
    *,
    name: str | None,
    image: str | None,
    command: list[str] | None,
    schedule: str | None,
    max_retries: int | None,
    checkpoint_path: str | None,
    env: list[str] | None,
    secret_env: list[str] | None,
    timeout: str | None,
    resume_policy: ResumePolicy | None,
) -> dict[str, Any]:
    """The body fields for the options that were given; ``None`` means "not given"."""
    fields: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": command or None,
        "max_retries": max_retries,
        "checkpoint_path": checkpoint_path,
        "env": _parse_env(env) if env else None,
        "secret_env": secret_env or None,
        "resume_policy": resume_policy.value if resume_policy else None,
    }
    body = {key: value for key, value in fields.items() if value is not None}
    # 'none' is sent as null: the API reads that as "clear it".
    if schedule is not None:
        body["schedule"] = None if schedule.lower() == NONE else schedule
    if timeout is not None:
        body["timeout_seconds"] = None if timeout.lower() == NONE else _parse_int(timeout)
    return body


def resource_fields(gpus: str | None, cpus: float | None, memory: str | None) -> dict[str, Any]:
    """The resource limits that were given, as the API's ``resources`` object."""
    given: dict[str, Any] = {"cpus": cpus, "memory": memory}
    if gpus is not None:
        given["gpus"] = "all" if gpus.lower() == "all" else _parse_int(gpus, "'--gpus'")
    return {key: value for key, value in given.items() if value is not None}


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="'--env'")
        env[key] = value
    return env


def _parse_int(text: str, option: str = "'--timeout'") -> int:
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a whole number", param_hint=option) from None
