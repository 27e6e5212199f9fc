"""Report pages: one self-contained HTML file per run, sweep or comparison, built from the record.

    a run          -> run_page.py (RunView -> Page)
    a sweep        -> its ranking read back from MLflow -> sweep_page
    A against B    -> `compare`'s Comparison, both runs' views -> pair_page
    every Page     -> page.py: rendered and written atomically, logged with the run in MLflow

Nothing here prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from trainlab.errors import ConfigError, TrainlabError
from trainlab.experiments.pair import Comparison, compare_pair
from trainlab.experiments.sides import side_of
from trainlab.experiments.wording import amount, interval, label, p_text
from trainlab.pages.page import REPORT, Figure, Page, Section, Table, write_page
from trainlab.pages.run_page import RunView, run_page, run_splits, view_from_record

if TYPE_CHECKING:
    from trainlab.experiments.sweep_run import SweepOutcome
    from trainlab.runs import Record, RunRow


def default_path(record: Record, row: RunRow, runs_dir: Path = Path("runs")) -> Path:
    """runs/<id>/report.html when this machine has the run's folder, else reports/<id>.html."""
    folder = runs_dir / row.run_id
    return folder / REPORT if folder.is_dir() else Path("reports") / f"{row.run_id}.html"


def report_for_record(record: Record, ref: str, out: Path | None = None, *, log: bool = True) -> tuple[Path, float]:
    """`trainlab report RUN`: the page of a recorded run, written to ``out`` (default: its run folder, else
    reports/) and logged as the run's artifact in MLflow. Returns the path and the seconds it took."""
    started = time.perf_counter()
    row = record.run(ref)
    if row.tags.get("job", "train") not in ("train", "trial"):
        raise ConfigError(f"run {row.run_id} is a {row.tags.get('job')} run, not a training run; a report page is "
                          "made for training runs, sweeps (`trainlab report SWEEP`) and comparisons "
                          "(`trainlab report A B`)")
    path, _ = write_page(run_page(view_from_record(record, row)), out or default_path(record, row))
    if log:
        record.log_artifact(row, path)
    return path, time.perf_counter() - started



def report_for(record: Record, ref: str, out: Path | None = None, *, log: bool = True) -> tuple[Path, float]:
    """A run's page, or a sweep's when ``ref`` is a sweep (with the pages of its trials' runs that it links to)."""
    row = record.run(ref)
    if row.tags.get("job") == "sweep":
        started = time.perf_counter()
        path = out or default_path(record, row)
        from trainlab.experiments.sweep_run import sweep_ranking

        outcome = sweep_ranking(row.run_id, record.uri)
        best = {run_id for r in outcome.rows[:TRIAL_PAGES] for run_id in r.run_ids}
        pages = write_trial_pages(record, row, best, log=log)
        links = {run_id: relative_link(page, path.parent) for run_id, page in pages.items()}
        path, _ = write_page(sweep_page(record, row, links, outcome), path)
        if log:
            record.log_artifact(row, path)
        return path, time.perf_counter() - started
    return report_for_record(record, ref, out, log=log)


# -- the sweep page ------------------------------------------------------------------------------------


TRIAL_PAGES = 10  # configurations (best first) whose runs get a page with the sweep's (a page costs ~1-3 s)


def write_trial_pages(record: Record, parent: RunRow, wanted: set[str], *, log: bool = True) -> dict[str, Path]:
    """The pages of a sweep's trial runs, where `trainlab report RUN` puts them (runs/<run>/report.html, else
    reports/<run>.html): run id -> page. The ``wanted`` runs' pages are written (a page already there and newer
    than its run's end is kept); other runs' pages are listed when they exist. A run without test predictions
    (failed, or still running) has none."""
    pages: dict[str, Path] = {}
    images: dict[str, tuple[Any, list[str]]] = {}  # the dataset is loaded once per data config, not once per trial
    for row in record.runs(parent.run_id):
        path = default_path(record, row)
        ended = record.end_ms(row) if row.status != "RUNNING" and path.is_file() else None
        if ended and path.stat().st_mtime * 1000 >= ended:  # made from the finished record: the same page
            pages[row.run_id] = path
            continue
        if row.run_id not in wanted:
            continue
        try:
            view = view_from_record(record, row, with_images=False)
        except TrainlabError:
            continue
        key = json.dumps([view.config.get("data"), view.data.get("fingerprint")], sort_keys=True, default=str)
        if key not in images:
            images[key] = (run_splits(view), list(view.notes))
        else:
            view.notes.extend(images[key][1])
        splits = images[key][0]
        if splits is not None:
            view.images, view.train_images = splits.test_x, splits.train_x
        pages[row.run_id], _ = write_page(run_page(view), path)
        if log:
            record.log_artifact(row, path)
    return pages


def relative_link(page: Path, start: Path) -> str:
    """An href from a page in ``start`` to ``page`` that works offline (a relative URL)."""
    return quote(Path(os.path.relpath(page.resolve(), start.resolve())).as_posix())


def full(value: Any) -> str:
    """A parameter's value in full: text as it is, anything else as JSON (spaced, so that it can wrap)."""
    return value if isinstance(value, str) else json.dumps(value)


def sweep_page(record: Record, parent: RunRow, links: dict[str, str] | None = None,
               outcome: SweepOutcome | None = None) -> Page:
    """Ranking, objective over trials, the metric against each hyperparameter, parallel coordinates,
    importances, pruned against completed, and links to the pages of every trial's runs (``links``: run id ->
    href; a run without one is named, not linked)."""
    from trainlab.experiments.sweep_run import sweep_ranking
    from trainlab.plots import bars_figure, parallel_figure, png_data_uri, scatter_figure, strip_figure

    links = links or {}
    outcome = outcome or sweep_ranking(parent.run_id, record.uri)
    metric, rows = outcome.metric, outcome.rows
    params = sorted({k for r in rows for k in r.params})
    scored = [r for r in rows if r.value is not None]
    score = [r.value for r in scored if r.value is not None]  # the same, typed float
    sections = []

    def run_cell(run_id: str) -> dict[str, str]:
        return {"href": links[run_id], "text": run_id} if run_id in links else {"text": f"{run_id} (no page yet)"}

    ranking = Section("Ranking", "ranking", notes=[
        f"Ranked by {metric} ({outcome.goal}) on validation, the mean over each trial's seeds; test accuracy is "
        f"reported beside it, never chosen on. The runs of the best {TRIAL_PAGES} configurations link to their "
        "pages, written with this one beside each run (runs/<run>/report.html, else reports/<run>.html); another "
        "run's page is made by `trainlab report RUN`, and linked here once it exists. A run that has no test "
        "predictions has no page."])
    ranking.tables.append(Table(["trial", *params, metric, "test accuracy", "state", "epochs", "runs (one per seed)"], [
        [str(r.number), *({"text": full(r.params[k]), "wrap": True} if k in r.params else "" for k in params),
         f"{r.value:.4f}" if r.value is not None else "", f"{r.test['accuracy']:.4f}" if "accuracy" in r.test else "",
         r.state, str(r.epochs), [run_cell(run_id) for run_id in r.run_ids]]
        for r in rows]))
    sections.append(ranking)

    progress = Section("The objective over trials", "objective")
    by_state: dict[str, tuple[list[float], list[float]]] = {}
    for r in rows:
        value = r.value if r.value is not None else r.latest
        if value is not None:
            xs, ys = by_state.setdefault(r.state, ([], []))
            xs.append(r.number)
            ys.append(value)
    if by_state:
        progress.figures.append(Figure(png_data_uri(scatter_figure(by_state, "trial", metric, f"{metric} by trial",
                                                                   integer_x=True)), "objective by trial"))
        progress.notes.append("A pruned trial shows the last value it reached before it was stopped.")
    counts = {state: sum(r.state == state for r in rows) for state in dict.fromkeys(r.state for r in rows)}
    progress.tables.append(Table(["state", "trials"], [[k, str(v)] for k, v in counts.items()]))
    sections.append(progress)

    if scored and params:
        listed = sweep_file_values(record, parent)
        each = Section("The metric against each hyperparameter", "params")
        for key in params:
            values = [r.params.get(key) for r in scored]
            numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
            if len(numbers) == len(values):
                positive = [v for v in numbers if v > 0]
                log_x = len(positive) == len(values) and max(positive) / min(positive) > 50
                fig = scatter_figure({"trials": (numbers, score)}, key, metric,
                                     f"{metric} against {key}", log_x=log_x,
                                     integer_x=all(isinstance(v, int) for v in values))
            else:
                labels = value_labels(key, listed.get(key, []), rows)  # a value (canonical) -> (label, in full)
                shown = [c for c in labels if any(canonical(v) == c for v in values)]  # in the file's order
                groups: dict[str, list[float]] = {}
                for c in shown:
                    groups.setdefault(labels[c][0], []).extend(s for v, s in zip(values, score) if canonical(v) == c)
                fig = strip_figure(groups, metric, f"{metric} by {key} (a dot per trial)")
                named = [[label, {"text": text, "wrap": True}] for label, text in (labels[c] for c in shown)
                         if label != text]
                if named:
                    order = "their place in the sweep file" if key in listed else "the trial that first tried them"
                    each.tables.append(Table(["value", key], named,
                                             caption=f"the values of {key} in the figure, numbered by {order}"))
            each.figures.append(Figure(png_data_uri(fig), f"{metric} against {key}"))
        sections.append(each)
        numeric = [k for k in params if all(isinstance(r.params.get(k), (int, float)) for r in scored)]
        if len(numeric) >= 2:
            sections.append(Section("Parallel coordinates", "parallel", figures=[Figure(png_data_uri(parallel_figure(
                numeric, [[float(np.log10(r.params[k])) if _log_scaled(scored, k) else float(r.params[k])
                           for k in numeric] for r in scored], score, metric)),
                "parallel coordinates")]))
    if outcome.importances:
        sections.append(Section("Parameter importances (Optuna's fANOVA)", "importances", figures=[Figure(
            png_data_uri(bars_figure(outcome.importances, "importance (share of the objective's variance)",
                                     "What mattered")), "importances")]))
    best = outcome.best
    facts = [("sweep", outcome.sweep_id), ("experiment", parent.experiment), ("status", parent.status.lower()),
             ("method", parent.tags.get("sweep_method", "?")), ("metric", f"{metric} ({outcome.goal})"),
             ("trials", f"{len(rows)} ({', '.join(f'{v} {k}' for k, v in counts.items())})"),
             ("best", f"trial {best.number}: {', '.join(f'{k}={full(v)}' for k, v in best.params.items())}"
              if best else "none yet")]
    return Page(f"Sweep {outcome.sweep_id}", f"{len(rows)} trials · best {metric} "
                f"{best.value:.4f}" if best and best.value is not None else f"{len(rows)} trials", facts, sections)


LABEL_WIDTH = 28  # characters: a longer value is "value N" in a figure, and given in full in a table beside it


def canonical(value: Any) -> str:
    """One text per value, whatever the order of a mapping's keys (MLflow writes a sweep file's YAML sorted)."""
    return json.dumps(value, sort_keys=True, default=str)


def sweep_file_values(record: Record, parent: RunRow) -> dict[str, list[Any]]:
    """Each categorical parameter's values in the order the sweep file lists them (the sweep.yaml its run logged);
    {} when the run has no readable one."""
    from trainlab.experiments.sweep_spec import sweep_params

    try:
        source = record.json_artifact(parent, "sweep.yaml")
        return {p.key: list(p.choices) for p in sweep_params(source.get("parameters")) if p.kind == "choice"}
    except (TrainlabError, AttributeError, TypeError, ValueError):
        return {}


def value_labels(key: str, listed: Sequence[Any], rows: Sequence[Any]) -> dict[str, tuple[str, str]]:
    """The values the trials gave ``key``: canonical text -> (its label in a figure, the value in full), in the
    sweep file's order (``listed``), then those it does not list by the trial that first tried them. A value too
    long for a figure is "value N", N its place in that order: the 4th value of the file is "value 4"."""
    place: dict[str, int] = {}
    for value in listed:
        place.setdefault(canonical(value), len(place))
    tried: dict[str, str] = {}  # canonical -> in full, as the trial recorded it (in the file's key order)
    for row in sorted(rows, key=lambda r: r.number):
        if key in row.params:
            tried.setdefault(canonical(row.params[key]), full(row.params[key]))
    for text in tried:
        place.setdefault(text, len(place))
    ordered = sorted(tried, key=place.__getitem__)
    return {c: (tried[c] if len(tried[c]) <= LABEL_WIDTH else f"value {place[c] + 1}", tried[c]) for c in ordered}


def _log_scaled(rows: Sequence[Any], key: str) -> bool:
    values = [float(r.params[key]) for r in rows]
    return min(values) > 0 and max(values) / min(values) > 50


# -- A against B ------------------------------------------------------------------------------------------


def report_for_pair(record: Record, ref_a: str, ref_b: str, out: Path | None = None) -> tuple[Path, float]:
    """Both runs side by side, with the verdict of `trainlab compare`."""
    started = time.perf_counter()
    path, _ = write_pair_report(record, compare_pair(record, side_of(record, ref_a), side_of(record, ref_b)), out)
    return path, time.perf_counter() - started


def write_pair_report(record: Record, comparison: Comparison, out: Path | None = None) -> tuple[Path, float]:
    """The page of A against B, written to ``out`` (default: reports/<A>-vs-<B>.html, a file per pair)."""
    views = [view_from_record(record, side.runs[0], with_images=False) if side.single else None
             for side in (comparison.a, comparison.b)]
    return write_page(pair_page(comparison, views), out or pair_path(comparison))


NAME_PART = 80  # characters of a side's name in a page's file name (two of them stay far below 255 bytes)


def side_name(side: Any) -> str:
    """What a side of A against B is called: its run, else the name it was given (SWEEP#N, a sweep, a filter)."""
    return side.runs[0].run_id if side.single else side.name


def file_part(name: str, limit: int = NAME_PART) -> str:
    """A side's name in a file name: SWEEP#N -> SWEEP-trialN; any character but letters, digits, '.', '_' and '-'
    -> '-'. When that changed or cut the name, a hash of it follows, so that two names never give one file."""
    sweep, hash_, trial = name.partition("#")
    text = f"{sweep}-trial{trial}" if hash_ and trial.isdigit() and "#" not in sweep else name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    if safe == text and len(safe) <= limit:
        return safe
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{safe[:limit - len(digest) - 1].rstrip('-._')}-{digest}".lstrip("-")


def pair_path(c: Comparison, folder: Path = Path("reports")) -> Path:
    """reports/<A>-vs-<B>.html: one file per ordered pair of sides, e.g. reports/SWEEP-trial0-vs-SWEEP-trial1.html."""
    return folder / f"{file_part(side_name(c.a))}-vs-{file_part(side_name(c.b))}.html"


def pair_page(c: Comparison, views: list[RunView | None]) -> Page:
    from trainlab.plots import confusion_pair_figure, overlaid_curves_figure, png_data_uri

    sections = []
    metrics = Section("Test metrics, B − A", "metrics")
    metrics.tables.append(Table(["metric", "A", "B", "B − A", "95% CI", "p", "test"], [
        [label(d.metric), f"{d.a:.4f}", f"{d.b:.4f}", amount(d.metric, d.difference),
         interval(d.metric, d.ci_low, d.ci_high), p_text(d.p_value), d.test] for d in c.differences]))
    sections.append(metrics)
    diffs = Section("What differs", "diff")
    diffs.tables.append(Table(["config key", "A", "B"], [[k, *v] for k, v in c.config_diff.items()] or
                              [["(none)", "", ""]]))
    diffs.tables.append(Table(["environment", "A", "B"], [[k, *v] for k, v in c.environment_diff.items()] or
                              [["(the same)", "", ""]]))
    sections.append(diffs)
    va, vb = views
    if va is not None and vb is not None:
        curves = Section("Learning curves", "curves", figures=[Figure(png_data_uri(overlaid_curves_figure(
            {f"A {va.run_id}": va.history, f"B {vb.run_id}": vb.history})), "A's and B's curves overlaid")])
        sections.append(curves)
        names = list(va.test.class_names)
        confusion = Section("Confusion matrices", "confusion", notes=[
            "B − A: positive cells are where B puts more test images than A (more right on the diagonal, more "
            "wrong off it)."])
        for tag, view in (("A", va), ("B", vb)):
            confusion.figures.append(Figure(png_data_uri(confusion_pair_figure(view.test.confusion, names,
                                                                               f"{tag}")), f"confusion matrix of {tag}"))
        difference = vb.test.confusion - va.test.confusion
        confusion.tables.append(Table(["true \\ predicted", *names],
                                      [[names[i], *(f"{v:+d}" if v else "·" for v in row)]
                                       for i, row in enumerate(difference)], caption="B − A, images per cell"))
        sections.append(confusion)
    facts = [(tag, ", ".join(side.summary()["runs"]) if side.single else
              f"{side.name}: {len(side.runs)} runs ({', '.join(side.summary()['runs'])})")
             for tag, side in (("A", c.a), ("B", c.b))]
    facts.append(("test split", " · ".join(f"{k} {v}" for k, v in c.split.items())))
    return Page(f"A {side_name(c.a)} against B {side_name(c.b)}", f"{label(c.metric)} · {c.outcome}", facts,
                sections, verdict=c.verdict + ".", notes=c.notes)
