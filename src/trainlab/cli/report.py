"""`trainlab report`: one self-contained HTML page for a run, a sweep, or A against B."""

from __future__ import annotations

from pathlib import Path

import typer

from trainlab.cli.app import app, console
from trainlab.cli.common import TrackingUriOption, user_errors
from trainlab.errors import ConfigError


@app.command()
def report(
    refs: list[str] = typer.Argument(..., metavar="RUN [B]", help="A run (run id, MLflow run id, run folder, "
                                     "models:/NAME@ALIAS), a sweep, or two runs to put side by side."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Where to write the page (default: the run's "
                                       "folder/report.html, else reports/<id>.html; A B: reports/<A>-vs-<B>.html)."),
    log: bool = typer.Option(True, "--log/--no-log", help="Also log the page as an artifact of the run in MLflow."),
    tracking_uri: str | None = TrackingUriOption,
) -> None:
    """Write a report page (one .html file, offline: images and styles inline) from the record."""
    with user_errors():
        from trainlab.experiments import report as pages
        from trainlab.runs import Record

        if len(refs) > 2:
            raise ConfigError(f"`trainlab report` takes one run or sweep, or two runs; got {len(refs)} "
                              "(rank many with `trainlab compare`)")
        record = Record(tracking_uri)
        if len(refs) == 2:
            path, seconds = pages.report_for_pair(record, refs[0], refs[1], out)
        else:
            path, seconds = pages.report_for(record, refs[0], out, log=log)
        size = path.stat().st_size
        console.print(f"report: {path} ({size / 1024:,.0f} KB, {seconds:.1f} s); open it in any browser, offline",
                      highlight=False, soft_wrap=True, markup=False)
