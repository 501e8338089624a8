"""``orchestrator metrics JOB_ID``: a run's training curves as sparklines in the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cli.context import JobIdArg, JsonOpt, connect
from cli.render import json_text, out, printable

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int) -> str:
    """``values`` as at most ``width`` block characters, low to high.

    Longer series are cut into ``width`` stretches of consecutive points, each drawn at its
    mean, so a long run still fits a line; a flat series is drawn at mid height.
    """
    if not values or width < 1:
        return ""
    if len(values) > width:
        values = [
            sum(chunk) / len(chunk)
            for i in range(width)
            if (chunk := values[i * len(values) // width : (i + 1) * len(values) // width])
        ]
    low, high = min(values), max(values)
    if high == low:
        return BLOCKS[len(BLOCKS) // 2] * len(values)
    top = len(BLOCKS) - 1
    return "".join(BLOCKS[round((value - low) / (high - low) * top)] for value in values)


def _number(value: float) -> str:
    return f"{value:.4g}"


def curves_table(metrics: dict[str, Any], width: int) -> Table:
    table = Table(title=f"Run {metrics['run_id']}", title_justify="left")
    table.add_column("Metric", style="bold")
    table.add_column("Curve (by step)", no_wrap=True)
    for header in ("First", "Last", "Min", "Max"):
        table.add_column(header, justify="right")
    table.add_column("Steps", justify="right")
    for series in metrics["series"]:
        values, steps = series["values"], series["steps"]
        table.add_row(
            # The trainer names its metrics: no control character or markup of theirs shows.
            Text(printable(series["name"])),
            Text(sparkline(values, width), style="cyan"),
            _number(values[0]),
            _number(values[-1]),
            _number(min(values)),
            _number(max(values)),
            f"{steps[0]}–{steps[-1]} ({len(steps)} points)",
        )
    return table


def show_metrics(
    ctx: typer.Context,
    job_id: JobIdArg,
    run: Annotated[
        str | None,
        typer.Option("--run", metavar="RUN_ID", help="Another run than the latest one."),
    ] = None,
    width: Annotated[int, typer.Option(min=5, max=400, help="Characters per sparkline.")] = 40,
    as_json: JsonOpt = False,
) -> None:
    """Print the training curves of the job's latest run as sparklines.

    One line per metric the trainer reported (PROGRESS lines), with its first, last, lowest
    and highest values.
    """
    with connect(ctx) as api:
        run_id = run or api.get_job(job_id)["latest_run_id"]
        if run_id is None:
            out().print(f"Job {job_id} has not run yet.")
            return
        metrics = api.run_metrics(job_id, run_id)
    if as_json:
        typer.echo(json_text(metrics))
        return
    console = out()
    series = [entry for entry in metrics["series"] if entry["values"]]
    if not series:
        console.print(f"Run {run_id} reported no metrics.")
        return
    console.print(curves_table({**metrics, "series": series}, width))
    if metrics["ignored_values"]:
        console.print(
            f"{metrics['ignored_values']} values of metrics past the first "
            f"{metrics['max_metrics']} names were not kept.",
            style="dim",
        )
