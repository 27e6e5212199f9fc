"""Report pages: one self-contained HTML file per run, sweep or comparison, built from the record.

    the record (runs.Record), or a run just trained -> RunView
        -> Page: identity facts and sections, each a picture beside its numbers
           (figures as inline PNGs from plots.py, tables, galleries of test images)
        -> templates/report.html.j2 -> one .html file that requests nothing (a CSP forbids it)

Nothing here prints.
"""

from __future__ import annotations

import base64
import io
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from trainlab import __version__
from trainlab.errors import ConfigError, TrainlabError

if TYPE_CHECKING:
    from trainlab.evaluate import Evaluation
    from trainlab.experiments.compare import Comparison
    from trainlab.runs import Record, RunRow

REPORT = "report.html"
SYSTEM = {"system/cpu_utilization_percentage": "CPU (%)", "system/system_memory_usage_megabytes": "memory (MB)"}
CONFUSED_PAIRS, PER_PAIR, MISTAKES = 3, 6, 12


@dataclass(frozen=True)
class Figure:
    uri: str  # data:image/png;base64,...
    alt: str


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[Any]]  # a cell is text, or {"href", "text"} for a link
    caption: str = ""


@dataclass(frozen=True)
class Gallery:
    caption: str
    tiles: list[Figure]


@dataclass
class Section:
    title: str
    anchor: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    galleries: list[Gallery] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Page:
    title: str
    subtitle: str
    facts: list[tuple[str, str]]
    sections: list[Section]
    config_text: str = ""
    verdict: str = ""
    notes: list[str] = field(default_factory=list)
    version: str = __version__
    generated: str = field(default_factory=lambda: datetime.now().strftime("%Y-%m-%d %H:%M"))


@dataclass
class RunView:
    """Everything a run page shows, whether read back from the record or handed over by a run just trained."""

    run_id: str
    experiment: str
    status: str
    start_ms: int | None
    end_ms: int | None
    params: dict[str, str]
    tags: dict[str, str]
    config: dict[str, Any]
    data: dict[str, Any]
    model: dict[str, Any]
    environment: dict[str, Any]
    history: list[dict[str, float]]
    test: "Evaluation"
    images: np.ndarray | None = None  # the test split's images, in the predictions' order
    system: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# -- reading a run back ---------------------------------------------------------------------------------


def view_from_record(record: "Record", row: "RunRow", *, with_images: bool = True) -> RunView:
    """A run's page data from MLflow alone (a teammate's run on the team server has no folder here)."""
    from trainlab.evaluate import classification_report

    documents = {}
    for name in ("config.yaml", "data.json", "model.json", "environment.json"):
        try:
            documents[name] = record.json_artifact(row, name)
        except ConfigError:
            documents[name] = {}
    predictions = record.predictions(row)
    probs = predictions.probs / predictions.probs.sum(axis=1, keepdims=True)  # saved rounded to 6 decimals
    test = classification_report(predictions.y_true, probs, predictions.class_names)
    view = RunView(row.run_id, row.experiment, row.status, row.start_ms, record.end_ms(row), row.params, row.tags,
                   documents["config.yaml"] or {}, documents["data.json"] or {}, documents["model.json"] or {},
                   documents["environment.json"] or {}, record.history(row), test)
    view.system = {SYSTEM[k]: v for k, v in record.system_metrics(row, list(SYSTEM)).items()}
    if with_images:
        view.images = test_images(view)
    return view


def test_images(view: RunView) -> np.ndarray | None:
    """The test images the predictions are about, when this machine has the run's data (same fingerprint)."""
    from trainlab.config import validate_config
    from trainlab.experiment import data_fingerprint, load_data

    try:
        cfg = validate_config(view.config)
        dataset, splits = load_data(cfg.data)
    except (TrainlabError, OSError, ValueError) as exc:
        view.notes.append(f"Test images not shown: the run's dataset cannot be loaded here ({exc}).")
        return None
    recorded = view.data.get("fingerprint")
    if recorded and data_fingerprint(dataset) != recorded or len(splits.test_x) != len(view.test.y_true):
        view.notes.append("Test images not shown: the dataset here is not the one the run was tested on "
                          "(different fingerprint or test split).")
        return None
    return splits.test_x


# -- the run page ---------------------------------------------------------------------------------------


def run_page(view: RunView) -> Page:
    import yaml

    from trainlab.plots import (confusion_pair_figure, learning_curves_figure, png_data_uri, reliability_figure,
                                roc_pr_figure, system_figure)

    ev = view.test
    names = list(ev.class_names)
    monitor = view.params.get("train.monitor", "val_accuracy")
    best = _int(view.tags.get("best_epoch")) or best_epoch(view.history, monitor)
    sections = []

    curves = Section("Learning curves", "curves", notes=[f"{len(view.history)} epochs; the dashed line marks the best "
                                                         f"epoch by {monitor} (its checkpoint is the model tested)."])
    if view.history:
        curves.figures.append(Figure(png_data_uri(learning_curves_figure(view.history, best, monitor)),
                                     "learning curves per epoch"))
    sections.append(curves)

    results = Section("Test results", "test")
    m = ev.metrics
    results.tables.append(Table(["metric", "value"], [[k.replace("_", " "), f"{m[k]:.4f}"] for k in
                                                    ("accuracy", "macro_precision", "macro_recall", "macro_f1",
                                                     "auroc", "log_loss") if k in m],
                                caption=f"{len(ev.y_true):,} test images"))
    results.tables.append(Table(["class", "precision", "recall", "F1", "support"],
                                [[r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}",
                                  str(r["support"])] for r in ev.per_class], caption="per class"))
    results.figures.append(Figure(png_data_uri(confusion_pair_figure(ev.confusion, names)),
                                  "confusion matrix: counts and row-normalised"))
    sections.append(results)

    if ev.roc:
        sections.append(Section("ROC and precision-recall curves", "curves-roc", figures=[
            Figure(png_data_uri(roc_pr_figure(ev.roc, ev.pr, m.get("auroc", math.nan))), "ROC and PR curves")]))

    prob_true, prob_pred, counts, ece = calibration(ev)
    sections.append(Section("Calibration", "calibration", figures=[
        Figure(png_data_uri(reliability_figure(prob_true, prob_pred, counts, ece)), "reliability diagram")],
        notes=[f"Expected calibration error {ece:.4f}: the average gap between how sure the model is and how often "
               "it is right, over 10 confidence bins weighted by their images."]))

    sections.append(mistakes_section(ev, view.images))

    system = Section("System", "system")
    if view.system:
        system.figures.append(Figure(png_data_uri(system_figure(view.system)), "CPU and memory over the run"))
    else:
        system.notes.append("No system metrics recorded (MLflow samples them while a run lives).")
    epoch_times = [h["epoch_seconds"] for h in view.history if "epoch_seconds" in h]
    speeds = [h["images_per_second"] for h in view.history if "images_per_second" in h]
    if epoch_times:
        system.tables.append(Table(["", "median", "min", "max"], [
            ["epoch time (s)", *(f"{f(epoch_times):.2f}" for f in (np.median, min, max))],
            ["training images/s", *(f"{f(speeds):,.0f}" for f in (np.median, min, max))]]))
    sections.append(system)

    for note in view.notes:
        sections[-1].notes.append(note)
    return Page(f"Run {view.run_id}", f"experiment {view.experiment} · {view.status.lower()} · "
                f"test accuracy {m.get('accuracy', math.nan):.4f}", run_facts(view, best),
                sections, yaml.safe_dump(view.config, sort_keys=False) if view.config else "")


def run_facts(view: RunView, best: int | None) -> list[tuple[str, str]]:
    data, env = view.data, view.environment
    splits = data.get("splits", {})
    duration = (view.end_ms - view.start_ms) / 1000 if view.end_ms and view.start_ms else None
    return [
        ("experiment", view.experiment), ("run", view.run_id), ("status", view.status.lower()),
        ("started", datetime.fromtimestamp(view.start_ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if view.start_ms else "?"),
        ("duration", f"{duration:.1f} s" if duration is not None else "?"),
        ("dataset", f"{view.tags.get('dataset', data.get('name', '?'))} · "
                    + " / ".join(f"{k} {v:,}" for k, v in splits.items())),
        ("classes", ", ".join(view.test.class_names)),
        ("model", f"{view.model.get('arch', view.params.get('model.arch', '?'))} · "
                  f"{view.model.get('parameters', 0):,} parameters"),
        ("best epoch", f"{best} of {len(view.history)}" if best else "?"),
        ("seed", view.params.get("seed", "?")),
        ("git", f"{view.tags.get('git_commit', '?')[:12]}{' (dirty)' if view.tags.get('git_dirty') == 'true' else ''}"),
        ("data fingerprint", view.tags.get("data_fingerprint", "?")),
        ("environment", f"Python {env.get('python', '?')} · torch {env.get('torch', '?')} · "
                        f"{env.get('torch_threads', view.params.get('threads', '?'))} threads · "
                        f"{env.get('cpu_model', '?')} ({env.get('cpu_capability', '?')})"),
        ("trainlab", view.tags.get("trainlab_version", "?")),
    ]


def best_epoch(history: list[dict[str, float]], monitor: str) -> int | None:
    values = [(h.get(monitor), int(h.get("step", i))) for i, h in enumerate(history, 1) if h.get(monitor) is not None]
    if not values:
        return None
    pick = min if "loss" in monitor else max
    return pick(values, key=lambda v: v[0])[1]


def _int(text: str | None) -> int | None:
    return int(float(text)) if text not in (None, "") else None


def calibration(ev: "Evaluation", bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per bin of top-class confidence: accuracy, mean confidence, images; and the expected calibration error."""
    from sklearn.calibration import calibration_curve

    confidence = ev.probs.max(axis=1)
    correct = (ev.y_pred == ev.y_true).astype(int)
    counts, _ = np.histogram(confidence, bins=bins, range=(0, 1))
    if correct.all() or not correct.any():  # calibration_curve needs both outcomes
        prob_true = np.array([correct.mean()])
        prob_pred = np.array([confidence.mean()])
    else:
        prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=bins, strategy="uniform")
    filled = counts[counts > 0]
    ece = float(np.sum(filled / filled.sum() * np.abs(prob_true - prob_pred))) if len(filled) == len(prob_true) \
        else float(abs(correct.mean() - confidence.mean()))
    return prob_true, prob_pred, counts, ece


def mistakes_section(ev: "Evaluation", images: np.ndarray | None) -> Section:
    """The most confused class pairs with example images, and the most confident mistakes."""
    names = list(ev.class_names)
    section = Section("Mistakes", "mistakes")
    off = ev.confusion.astype(float).copy()
    np.fill_diagonal(off, 0)
    pairs = [(int(i), int(j)) for i, j in zip(*np.unravel_index(np.argsort(-off, axis=None), off.shape))
             if off[i, j] > 0][:CONFUSED_PAIRS]
    section.tables.append(Table(["true class", "predicted as", "images", "share of the class"],
                                [[names[i], names[j], str(int(off[i, j])),
                                  f"{off[i, j] / max(1, ev.confusion[i].sum()):.1%}"] for i, j in pairs],
                                caption="most confused pairs"))
    if not pairs:
        section.notes.append("No mistakes on the test split.")
    if images is None:
        return section
    pred = ev.y_pred
    for i, j in pairs:
        where = np.flatnonzero((ev.y_true == i) & (pred == j))
        where = where[np.argsort(-ev.probs[where, j])][:PER_PAIR]
        section.galleries.append(Gallery(f"{names[i]} taken for {names[j]}", [
            Figure(image_uri(images[k]), f"#{k}: {names[j]} {ev.probs[k, j]:.2f}, {names[i]} {ev.probs[k, i]:.2f}")
            for k in where]))
    wrong = np.flatnonzero(pred != ev.y_true)
    wrong = wrong[np.argsort(-ev.probs[wrong].max(axis=1))][:MISTAKES]
    if len(wrong):
        section.galleries.append(Gallery("the most confident mistakes (true → predicted, probability)", [
            Figure(image_uri(images[k]), f"#{k}: {names[ev.y_true[k]]} → {names[pred[k]]} {ev.probs[k].max():.2f}")
            for k in wrong]))
    return section


def image_uri(image: np.ndarray) -> str:
    """A test image (C, H, W, uint8) as a small inline PNG."""
    from PIL import Image

    array = np.asarray(image)
    array = array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# -- writing ----------------------------------------------------------------------------------------------


def render(page: Page) -> str:
    from jinja2 import Environment, PackageLoader

    # every value on a page comes from a record someone else may have written: always escaped
    env = Environment(loader=PackageLoader("trainlab.experiments", "templates"), autoescape=True)
    return env.get_template("report.html.j2").render(page=page)


def write_page(page: Page, path: Path) -> tuple[Path, float]:
    """Render and write atomically; returns the path and the seconds it took."""
    from trainlab.fileio import atomic_write_text

    started = time.perf_counter()
    html = render(page)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, html)
    return path, time.perf_counter() - started


def default_path(record: "Record", row: "RunRow", runs_dir: Path = Path("runs")) -> Path:
    """runs/<id>/report.html when this machine has the run's folder, else reports/<id>.html."""
    folder = runs_dir / row.run_id
    return folder / REPORT if folder.is_dir() else Path("reports") / f"{row.run_id}.html"


def report_for_record(record: "Record", ref: str, out: Path | None = None, *, log: bool = True) -> tuple[Path, float]:
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



def report_for(record: "Record", ref: str, out: Path | None = None, *, log: bool = True) -> tuple[Path, float]:
    """A run's page, or a sweep's when ``ref`` is a sweep."""
    row = record.run(ref)
    if row.tags.get("job") == "sweep":
        started = time.perf_counter()
        path, _ = write_page(sweep_page(record, row), out or default_path(record, row))
        if log:
            record.log_artifact(row, path)
        return path, time.perf_counter() - started
    return report_for_record(record, ref, out, log=log)


# -- the sweep page ------------------------------------------------------------------------------------


def sweep_page(record: "Record", parent: "RunRow") -> Page:
    """Ranking, objective over trials, the metric against each hyperparameter, parallel coordinates,
    importances, pruned against completed, and links to the trials' pages."""
    from trainlab.experiments.sweep_run import sweep_ranking
    from trainlab.plots import bars_figure, parallel_figure, png_data_uri, scatter_figure, strip_figure

    outcome = sweep_ranking(parent.run_id, record.uri)
    metric, rows = outcome.metric, outcome.rows
    params = sorted({k for r in rows for k in r.params})
    scored = [r for r in rows if r.value is not None]
    sections = []

    ranking = Section("Ranking", "ranking", notes=[
        f"Ranked by {metric} ({outcome.goal}) on validation, the mean over each trial's seeds; test accuracy is "
        "reported beside it, never chosen on. A trial's page: `trainlab report RUN` (the links lead to where it "
        "is written, runs/<run>/report.html)."])
    ranking.tables.append(Table(["trial", *params, metric, "test accuracy", "state", "epochs", "runs"], [
        [str(r.number), *(short(r.params.get(k, "")) for k in params),
         f"{r.value:.4f}" if r.value is not None else "", f"{r.test['accuracy']:.4f}" if "accuracy" in r.test else "",
         r.state, str(r.epochs), *([{"href": f"../{r.run_ids[0]}/{REPORT}", "text": r.run_ids[0]}] if r.run_ids
                                   else [""])]
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
        progress.figures.append(Figure(png_data_uri(scatter_figure(by_state, "trial", metric, f"{metric} by trial")),
                                       "objective by trial"))
        progress.notes.append("A pruned trial shows the last value it reached before it was stopped.")
    counts = {state: sum(r.state == state for r in rows) for state in dict.fromkeys(r.state for r in rows)}
    progress.tables.append(Table(["state", "trials"], [[k, str(v)] for k, v in counts.items()]))
    sections.append(progress)

    if scored and params:
        each = Section("The metric against each hyperparameter", "params")
        for key in params:
            values = [r.params.get(key) for r in scored]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                positive = [float(v) for v in values if float(v) > 0]
                log_x = len(positive) == len(values) and max(positive) / min(positive) > 50
                fig = scatter_figure({"trials": ([float(v) for v in values], [r.value for r in scored])}, key, metric,
                                     f"{metric} against {key}", log_x=log_x)
            else:
                groups: dict[str, list[float]] = {}
                for v, r in zip(values, scored):
                    groups.setdefault(short(v, 24), []).append(r.value)
                fig = strip_figure(groups, metric, f"{metric} by {key} (a dot per trial)")
            each.figures.append(Figure(png_data_uri(fig), f"{metric} against {key}"))
        sections.append(each)
        numeric = [k for k in params if all(isinstance(r.params.get(k), (int, float)) for r in scored)]
        if len(numeric) >= 2:
            sections.append(Section("Parallel coordinates", "parallel", figures=[Figure(png_data_uri(parallel_figure(
                numeric, [[float(np.log10(r.params[k])) if _log_scaled(scored, k) else float(r.params[k])
                           for k in numeric] for r in scored], [r.value for r in scored], metric)),
                "parallel coordinates")]))
    if outcome.importances:
        sections.append(Section("Parameter importances (Optuna's fANOVA)", "importances", figures=[Figure(
            png_data_uri(bars_figure(outcome.importances, "importance (share of the objective's variance)",
                                     "What mattered")), "importances")]))
    best = outcome.best
    facts = [("sweep", outcome.sweep_id), ("experiment", parent.experiment), ("status", parent.status.lower()),
             ("method", parent.tags.get("sweep_method", "?")), ("metric", f"{metric} ({outcome.goal})"),
             ("trials", f"{len(rows)} ({', '.join(f'{v} {k}' for k, v in counts.items())})"),
             ("best", f"trial {best.number}: {', '.join(f'{k}={short(v)}' for k, v in best.params.items())}"
              if best else "none yet")]
    return Page(f"Sweep {outcome.sweep_id}", f"{len(rows)} trials · best {metric} "
                f"{best.value:.4f}" if best and best.value is not None else f"{len(rows)} trials", facts, sections)


def _log_scaled(rows: Sequence[Any], key: str) -> bool:
    values = [float(r.params[key]) for r in rows]
    return min(values) > 0 and max(values) / min(values) > 50


def short(value: Any, width: int = 40) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[:width - 1] + "…"


# -- A against B ------------------------------------------------------------------------------------------


def report_for_pair(record: "Record", ref_a: str, ref_b: str, out: Path | None = None) -> tuple[Path, float]:
    """Both runs side by side, with the verdict of `trainlab compare`."""
    from trainlab.experiments.compare import compare_pair, side_of

    started = time.perf_counter()
    path, _ = write_pair_report(record, compare_pair(record, side_of(record, ref_a), side_of(record, ref_b)), out)
    return path, time.perf_counter() - started


def write_pair_report(record: "Record", comparison: "Comparison", out: Path | None = None) -> tuple[Path, float]:
    views = [view_from_record(record, side.runs[0], with_images=False) if side.single else None
             for side in (comparison.a, comparison.b)]
    names = "-vs-".join(side.runs[0].run_id if side.single else "group" for side in (comparison.a, comparison.b))
    return write_page(pair_page(comparison, views), out or Path("reports") / f"{names}.html")


def pair_page(c: "Comparison", views: list[RunView | None]) -> Page:
    from trainlab.experiments.compare import amount, interval, label, p_text
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
    if all(views):
        va, vb = views  # type: ignore[misc]
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
    facts = [("A", ", ".join(c.a.summary()["runs"])), ("B", ", ".join(c.b.summary()["runs"])),
             ("test split", " · ".join(f"{k} {v}" for k, v in c.split.items()))]
    return Page("A against B", f"{label(c.metric)} · {c.outcome}", facts, sections, verdict=c.verdict + ".",
                notes=c.notes)
