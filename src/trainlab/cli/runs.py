"""`trainlab runs` and `trainlab runs show`: the record, read back from MLflow."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from trainlab.cli.app import app, console
from trainlab.cli.common import TrackingUriOption, fmt, user_errors

if TYPE_CHECKING:
    from trainlab.runs import RunRow

runs_app = typer.Typer(help="List runs from the MLflow record: filter, sort, group; `runs show RUN` for one.",
                       no_args_is_help=False)
app.add_typer(runs_app, name="runs")


def when(ms: int | None) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M") if ms else ""


@runs_app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context,
    filter_string: str = typer.Option("", "--filter", "-f",
                                      help="MLflow search syntax, e.g. \"metrics.test_accuracy > 0.9 and params.model = 'small'\""),
    sort: str | None = typer.Option(None, "--sort", "-s", help="A metric (test_accuracy) or metrics./params./attributes. key."),
    ascending: bool = typer.Option(False, "--asc", help="Sort ascending (default: descending)."),
    group: str | None = typer.Option(None, "--group", "-g", help="Group by this param: count, mean, std and 95% "
                                        "confidence interval of --metric per group."),
    metric: str = typer.Option("test_accuracy", "--metric", "-m", help="Metric summarised by --group."),
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="Only this experiment."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many runs."),
    tracking_uri: str | None = TrackingUriOption,
    as_json: bool = typer.Option(False, "--json", help="Print runs as JSON."),
) -> None:
    """List runs with their key metrics; a run whose process died shows as killed."""
    if ctx.invoked_subcommand:
        return
    with user_errors():
        from trainlab.run_listing import KEY_METRICS, group_runs, list_runs

        rows = list_runs(tracking_uri, experiment=experiment, filter_string=filter_string, sort=sort,
                         ascending=ascending, limit=limit)
        if as_json:
            print(json.dumps([r.__dict__ for r in rows], indent=2, default=str))
            return
        if group:
            stats = group_runs(rows, group, metric)
            table = Table(title=f"{metric} by {group} ({len(rows)} runs)", title_justify="left")
            for col in (group, "runs", "mean", "std", "95% CI of the mean"):
                table.add_column(col, justify="left" if col == group else "right")
            for g in stats:
                table.add_row(g.value, str(g.runs), fmt(g.mean), fmt(g.std),
                              "n/a (one run)" if g.runs < 2 else f"{fmt(g.ci_low)} to {fmt(g.ci_high)}")
            console.print(table)
            console.print("Runs of a group differ in what the filter did not fix (seeds, other params); overlapping "
                          "intervals do not prove groups equal: `trainlab compare --a FILTER --b FILTER` tests it.",
                          highlight=False, soft_wrap=True)
            return
        matching = f" matching {filter_string!r}" if filter_string else ""
        table = Table(title=f"{len(rows)} run{'' if len(rows) == 1 else 's'}{matching}", title_justify="left")
        several = len({r.experiment for r in rows}) > 1
        headers = ["run", *(["experiment"] if several else []), "job", "status", "dataset", "model", "epochs",
                   "test acc", "macro F1", "AUROC", "started"]
        numbers = ("epochs", "test acc", "macro F1", "AUROC")
        for col in headers:  # on a narrow terminal the words wrap; the numbers keep their width
            table.add_column(col, justify="right" if col in numbers else "left", overflow="fold",
                             no_wrap=col in numbers, min_width=len(col) if col in numbers else None)
        for r in rows:
            # `trainlab test --record`, a sweep's parent, a comparison: no training of their own
            job = {"evaluate": "test"}.get(r.tags.get("job", "train"), r.tags.get("job", "train"))
            table.add_row(r.run_id, *([r.experiment] if several else []), job, r.status.lower(),
                          r.params.get("dataset", r.tags.get("dataset", "")),
                          r.params.get("model", r.tags.get("model", "")),
                          epochs_cell(r) if job in ("train", "trial") else "",
                          *(fmt(r.metrics.get(m, float("nan"))) for m in KEY_METRICS), when(r.start_ms))
        console.print(table)


def epochs_cell(row: RunRow) -> str:
    """Epochs a training run ran: all of them once it ended, else those recorded of those planned ('2/5')."""
    if "epochs_run" in row.metrics:
        return f"{row.metrics['epochs_run']:.0f}"
    planned = row.params.get("train.epochs", "?")
    return f"{row.epochs_done}/{planned}" if row.epochs_done is not None else f"?/{planned}"


@runs_app.command("show")
def runs_show(
    run: str = typer.Argument(..., metavar="RUN", help="trainlab run id or MLflow run id."),
    tracking_uri: str | None = TrackingUriOption,
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """One run: config, final metrics, tags and artifacts."""
    with user_errors():
        from trainlab.run_listing import run_details

        info = run_details(run, tracking_uri)
        if as_json:
            print(json.dumps(info, indent=2, default=str))
            return
        console.print(f"run {info['run_id']} (MLflow {info['mlflow_id']}) · experiment {info['experiment']} · "
                      f"{info['status'].lower()} · {when(info['start_ms'])} → {when(info['end_ms'])}",
                      highlight=False, soft_wrap=True, markup=False)
        for title, items in (("config", info["params"]), ("metrics", info["metrics"]), ("tags", info["tags"])):
            table = Table(title=title, title_justify="left", show_header=False)
            table.add_column("key")
            table.add_column("value")
            for key, value in items.items():
                if title == "config" and "." not in key and key not in ("name", "seed", "device", "threads", "output_dir"):
                    continue  # the short filter aliases repeat config values
                table.add_row(key, fmt(value) if isinstance(value, float) else str(value))
            console.print(table)
        console.print("artifacts:", highlight=False)
        for path, size in info["artifacts"]:
            console.print(f"  {path}  ({size:,} bytes)", highlight=False, markup=False)
