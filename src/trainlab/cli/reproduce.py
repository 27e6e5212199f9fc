"""`trainlab reproduce RUN`: rebuild a recorded run's code, train it again, and say whether it matches."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from trainlab.cli.app import app, console, err_console
from trainlab.cli.common import TrackerOption, TrackingUriOption, print_where, tracker_names, user_errors, warn
from trainlab.errors import ConfigError, TrainlabError


@app.command()
def reproduce(
    run: str | None = typer.Argument(None, metavar="RUN", help="Run id, MLflow run id, run folder or "
                                        "models:/NAME@ALIAS (the record may be on the team's server)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only check: can this run be reproduced here?"),
    all_runs: bool = typer.Option(False, "--all", help="Check every finished training run matching --filter."),
    filter_string: str = typer.Option("", "--filter", "-f", help="With --all: MLflow search syntax."),
    rtol: float = typer.Option(1e-4, "--rtol", min=0, help="Relative tolerance for 'within tolerance'."),
    atol: float = typer.Option(1e-6, "--atol", min=0, help="Absolute tolerance for 'within tolerance'."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Train with this many threads instead of "
                                          "the recorded count (a bit-exact match is then not expected)."),
    record: bool = typer.Option(True, "--record/--no-record", help="Record the reproduction as a run (job "
                                "`reproduce`) and tag the original with its verdict."),
    repo: Path = typer.Option(Path("."), "--repo", help="The git repository that holds the run's commit."),
    tracker: list[str] | None = TrackerOption,
    tracking_uri: str | None = TrackingUriOption,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Reproduce a recorded run: check, rebuild its code in a temporary worktree, retrain, compare, verdict.

    Exit 0: identical or within tolerance; 1: different; 2: it cannot be reproduced here.
    """
    with user_errors():
        from trainlab.experiments import reproduce as rep
        from trainlab.runs import Record

        store = Record(tracking_uri)
        if all_runs:
            raise typer.Exit(check_all(store, rep.runs_to_check(store, filter_string), repo, dry_run, rtol, atol,
                                       as_json))
        if run is None:
            raise ConfigError("give a run to reproduce (`trainlab reproduce RUN`), or --all --filter \"...\"")
        if dry_run:
            plan = rep.dry_run(store, run, repo, threads)
            if as_json:
                print(json.dumps({"run_id": plan.row.run_id, "reproducible": True, "checked": plan.checked,
                                  "warnings": plan.warnings}, indent=2))
                return
            show_plan(plan)
            console.print(f"run {plan.row.run_id} can be reproduced here.", highlight=False)
            return
        steps = {"checked": "checks passed; rebuilding the recorded code and training it ..."}
        outcome = rep.reproduce(store, run, repo=repo, threads=threads, rtol=rtol, atol=atol, record_it=record,
                                trackers=tuple(tracker_names(tracker) or ("mlflow", "wandb")), warn=warn,
                                on_step=lambda step: None if as_json or step not in steps else
                                err_console.print(steps[step], highlight=False))
        if as_json:
            print(json.dumps(outcome.as_dict(), indent=2, default=str))
        else:
            show_plan(outcome.plan)
            show_outcome(outcome)
            if record and outcome.record_id:
                print_where(outcome.record_id, outcome.where, {})
        raise typer.Exit(outcome.exit_code)


def show_plan(plan) -> None:  # noqa: ANN001
    for line in plan.checked:
        console.print(f"  ok  {line}", highlight=False, markup=False)
    for line in plan.warnings:
        warn(f"{line} (a bit-exact match is not expected)")


def show_outcome(o) -> None:  # noqa: ANN001
    table = Table(title=f"recorded against reproduced ({o.reproduced_seconds:.1f} s to reproduce; the run trained "
                        f"{o.recorded_seconds or float('nan'):.1f} s)", title_justify="left")
    for col in ("metric", "largest difference"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, gap in o.largest.items():
        table.add_row(key, f"{gap:.3g}")
    table.add_row("test labels identical", f"{o.label_agreement:.2%}")
    table.add_row("largest probability difference", f"{o.largest_probability_difference:.3g}")
    console.print(table)
    console.print(f"verdict: {o.sentence}.", highlight=False, markup=False, soft_wrap=True, style="bold")


def check_all(store, rows, repo: Path, dry_run: bool, rtol: float, atol: float, as_json: bool) -> int:  # noqa: ANN001
    """Every run in turn: a table of verdicts; exit 1 if any differs, 2 if any cannot be reproduced."""
    from trainlab.experiments import reproduce as rep

    results = []
    for row in rows:
        try:
            if dry_run:
                rep.dry_run(store, row.run_id, repo)
                results.append((row.run_id, "reproducible", ""))
            else:
                o = rep.reproduce(store, row.run_id, repo=repo, rtol=rtol, atol=atol, record_it=True, warn=warn)
                results.append((row.run_id, o.verdict, o.sentence))
        except TrainlabError as exc:
            results.append((row.run_id, "cannot reproduce", str(exc)))
    if as_json:
        print(json.dumps([{"run_id": r, "verdict": v, "detail": d} for r, v, d in results], indent=2))
    else:
        table = Table(title=f"{len(results)} runs", title_justify="left")
        for col in ("run", "verdict", "detail"):
            table.add_column(col)
        for r, v, d in results:
            table.add_row(r, v, d)
        console.print(table)
    verdicts = {v for _, v, _ in results}
    return 2 if "cannot reproduce" in verdicts else 1 if "different" in verdicts else 0
