"""`trainlab compare`: A against B with honest statistics, or many runs ranked against the best."""

from __future__ import annotations

import json
import math
import statistics
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from trainlab.cli.app import app, console, err_console
from trainlab.cli.common import TrackerOption, TrackingUriOption, fmt, print_where, tracker_names, user_errors, warn
from trainlab.errors import ConfigError
from trainlab.pages.page import short

if TYPE_CHECKING:
    from trainlab.experiments.pair import Comparison
    from trainlab.experiments.ranking import Ranking
    from trainlab.experiments.sides import Side
    from trainlab.experiments.significance import Difference


@app.command()
def compare(
    refs: list[str] | None = typer.Argument(
        None, metavar="[RUN]...", help="Two runs (run id, MLflow run id, run folder, models:/NAME@ALIAS, a sweep "
        "trial SWEEP#N) to compare A against B; one sweep, or three or more runs, to rank against the best."),
    a: str | None = typer.Option(None, "--a", help="Side A as a seed group: runs matching this MLflow filter, "
                                    "e.g. \"params.model = 'small'\"."),
    b: str | None = typer.Option(None, "--b", help="Side B as a seed group (MLflow filter)."),
    pool: bool = typer.Option(False, "--pool", help="With --a/--b: take the runs a filter matches as one group even "
                              "when their configs differ in more than the seed (otherwise refused)."),
    filter_string: str | None = typer.Option(None, "--filter", "-f", help="Rank every finished training run "
                                                "matching this MLflow filter."),
    metric: str = typer.Option("test_accuracy", "--metric", "-m", help="The metric the verdict is about: "
                               "test_accuracy, test_macro_f1, test_auroc, test_log_loss (seed groups: any recorded)."),
    alpha: float = typer.Option(0.05, "--alpha", min=0.0001, max=0.5, help="Significance level."),
    resamples: int = typer.Option(2000, "--resamples", min=100, help="Bootstrap resamples of the test split."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap (results are reproducible)."),
    record: bool = typer.Option(False, "--record", help="Keep the comparison as a run of job `compare` "
                                "(MLflow and W&B), linking the runs compared."),
    report: bool = typer.Option(False, "--report", help="Also write the page of A against B (as `trainlab "
                                "report A B`)."),
    tracker: list[str] | None = TrackerOption,
    tracking_uri: str | None = TrackingUriOption,
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """Is B really better than A? Paired tests on the shared test split, seed groups, Holm for many."""
    with user_errors():
        from trainlab.experiments import pair
        from trainlab.experiments.comparison_run import record_comparison
        from trainlab.experiments.ranking import candidates_of, rank_many
        from trainlab.experiments.sides import side_from_filter, side_of
        from trainlab.runs import Record

        refs = refs or []
        if (a is None) != (b is None):
            raise ConfigError("give both --a FILTER and --b FILTER (two seed groups), or two runs")
        if a is not None and (refs or filter_string):
            raise ConfigError("--a/--b compare two groups; give no RUN or --filter with them")
        if pool and a is None:
            raise ConfigError("--pool applies to --a/--b FILTER (runs of several configs pooled as one group); "
                              "leave it out, or compare with --a/--b")
        if not refs and a is None and not filter_string:
            raise ConfigError("nothing to compare: give two runs (`trainlab compare A B`), --a/--b FILTER, a sweep, "
                              "or --filter; list runs with `trainlab runs`")
        store = Record(tracking_uri)
        options: dict[str, Any] = {"metric": metric, "alpha": alpha, "resamples": resamples, "seed": seed}
        result: Comparison | Ranking
        if a is not None and b is not None:
            result = pair.compare_pair(store, side_from_filter(store, a, option="--a", pool=pool),
                                       side_from_filter(store, b, option="--b", pool=pool), **options)
        elif len(refs) == 2 and not filter_string:
            result = pair.compare_pair(store, side_of(store, refs[0]), side_of(store, refs[1]), **options)
        else:
            sides, left_out = candidates_of(store, refs, filter_string)
            result = rank_many(store, sides, progress=fetching(as_json), **options)
            result.notes.extend(left_out)
        if as_json:
            print(json.dumps(result.as_dict(), indent=2, default=str))
        elif isinstance(result, pair.Comparison):
            show_pair(result)
        else:
            show_ranking(result)
        if report and isinstance(result, pair.Comparison):
            from trainlab.experiments.report import write_pair_report

            path, _ = write_pair_report(store, result)
            console.print(f"report: {path} (open it in any browser, offline)", highlight=False, markup=False)
        if record:
            kept = record_comparison(result, store, trackers=tracker_names(tracker) or ("mlflow", "wandb"), warn=warn)
            print_where(kept.run_id, kept.where, kept.tracking_failures, quiet=as_json)


def fetching(quiet: bool):  # noqa: ANN201
    """A line on a terminal while predictions of many runs are read from the store."""

    def progress(done: int, total: int) -> None:
        if not quiet and err_console.is_terminal:
            err_console.print(f"reading predictions {done}/{total}", end="\r", highlight=False)

    return progress


def side_line(tag: str, side: Side) -> str:
    runs = side.runs
    what = (f"run {runs[0].run_id}" if len(runs) == 1
            else f"{len(runs)} runs (seeds {', '.join(side.seeds)})")
    named = "" if side.name in (runs[0].run_id, runs[0].mlflow_id) else f"{side.name}: "
    params = f" ({settings(side.params)})" if side.params else ""
    return f"{tag}  {named}{what}{params} · experiment {runs[0].experiment}"


def settings(params: dict) -> str:
    """'model.arch=fast, lr=0.01'; a nested value (a list of layers) as short JSON."""

    return ", ".join(f"{k}={short(v, 48)}" for k, v in params.items())


def split_line(split: dict) -> str:
    return "test split: " + " · ".join(f"{k} {v}" for k, v in split.items())


def show_pair(c: Comparison) -> None:
    from trainlab.experiments.significance import GroupDifference
    from trainlab.experiments.wording import amount, interval, label, p_text

    for line in (side_line("A", c.a), side_line("B", c.b), split_line(c.split)):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    diff_table("config diff", c.config_diff, "config: the same" + (" (seed aside)" if "seed" not in c.config_diff else ""))
    diff_table("environment diff", c.environment_diff,
               "environment: the same (trainlab, Python, torch, threads, device, git commit, CPU)")
    table = Table(title="test metrics (B − A)", title_justify="left")
    for col in ("metric", "A", "B", "B − A", "95% CI", "p", "test"):
        table.add_column(col, justify="left" if col in ("metric", "test") else "right")
    for d in c.differences:
        if isinstance(d, GroupDifference):
            left, right = (f"{fmt(d.a)} ± {fmt(d.std_a)} ({d.n_a})",
                           f"{fmt(d.b)} ± {fmt(d.std_b)} ({d.n_b})")
        elif not (c.a.single and c.b.single):  # seed groups compared on their saved predictions
            left, right = (group_cell(mean, side.values(d.metric)) for mean, side in ((d.a, c.a), (d.b, c.b)))
        else:
            left, right = fmt(d.a), fmt(d.b)
        better = " (lower is better)" if d.metric.endswith("loss") else ""
        table.add_row(label(d.metric) + better, left, right, amount(d.metric, d.difference),
                      interval(d.metric, d.ci_low, d.ci_high), p_text(d.p_value), d.test)
    console.print(table)
    console.print(f"verdict: {c.verdict}.", highlight=False, markup=False, soft_wrap=True, style="bold")
    for note in c.notes:
        console.print(f"  {note}", highlight=False, markup=False, soft_wrap=True)


def group_cell(mean: float, values: list[float]) -> str:
    """'0.9812 ± 0.0021 (2)': a side's mean, the std of its runs' recorded values, and how many."""
    if len(values) < 2:
        return f"{fmt(mean)} ({len(values)})"
    return f"{fmt(mean)} ± {fmt(statistics.stdev(values))} ({len(values)})"


def diff_table(title: str, diff: dict[str, list[str]], same: str) -> None:
    if not diff:
        console.print(same, highlight=False, markup=False)
        return
    table = Table(title=title, title_justify="left")
    for col in ("key", "A", "B"):
        table.add_column(col)
    for key, (left, right) in diff.items():
        table.add_row(key, left, right)
    console.print(table)


def show_ranking(r: Ranking) -> None:
    from trainlab.experiments.wording import amount, interval, label, p_text

    console.print(split_line(r.split), highlight=False, markup=False, soft_wrap=True)
    table = Table(title=f"ranked on {label(r.metric)}, each against the best", title_justify="left")
    for col in ("#", "candidate", "runs", label(r.metric), "vs best", "95% CI", "p", "Holm p", ""):
        # the candidate's name wraps whole (the #N is what `compare SWEEP#N ...` takes); the numbers keep their width
        table.add_column(col, justify="left" if col in ("candidate", "") else "right", overflow="fold",
                         no_wrap=col not in ("candidate", "95% CI"))
    for i, row in enumerate(r.rows, 1):
        d: Difference | None = row.against_best
        value = fmt(row.mean) + ("" if math.isnan(row.std) else f" ± {fmt(row.std)}")
        name = row.side.name + (f" ({settings(row.side.params)})" if row.side.params else "")
        mark = ("best" if d is None else "too few seeds" if row.too_few_seeds else
                "≈ best" if row.indistinguishable else "worse")
        table.add_row(str(i), name, str(len(row.side.runs)), value,
                      "" if d is None else amount(r.metric, d.difference),
                      "" if d is None else interval(r.metric, d.ci_low, d.ci_high),
                      "" if d is None else p_text(d.p_value), "" if row.p_holm is None else p_text(row.p_holm), mark)
    console.print(table)
    console.print(f"verdict: {r.verdict}.", highlight=False, markup=False, soft_wrap=True, style="bold")
    for note in r.notes:
        console.print(f"  {note}", highlight=False, markup=False, soft_wrap=True)
