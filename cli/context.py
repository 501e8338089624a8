"""What every command shares: the target API (global options) and a connection to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from cli.client import ApiError, ApiUnreachable, OrchestratorClient
from cli.render import printable
from cli.target import DEFAULT_URL, Target

JobIdArg = Annotated[
    str, typer.Argument(metavar="JOB_ID", help="The job's id, e.g. train-a1b2c3d4.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON response as is.")]


@contextmanager
def connect(ctx: typer.Context) -> Iterator[OrchestratorClient]:
    """A client for the target API; its errors end the command with one line on stderr."""
    target = ctx.find_object(Target) or Target(DEFAULT_URL, None)
    try:
        with OrchestratorClient(target.url, target.api_key) as client:
            yield client
    except (ApiError, ApiUnreachable) as err:
        typer.echo(f"error: {printable(str(err))}", err=True)
        raise typer.Exit(1) from None
