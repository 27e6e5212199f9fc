"""A run's report page: what it shows, read back from the record or handed over by a run just trained.

    the record (runs.Record: predictions, histories, documents, system metrics), or the training
    process -> RunView -> Page (identity, curves, test results, ROC/PR, calibration, mistakes, system)
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.errors import ArtifactNotFound, TrainlabError
from trainlab.pages.page import REPORT, Figure, Gallery, Page, Section, Table, write_page

if TYPE_CHECKING:
    from trainlab.config import AugmentConfig, Config
    from trainlab.data import Splits
    from trainlab.evaluate import Evaluation
    from trainlab.run_documents import RunDocuments
    from trainlab.runs import Record, RunRow
    from trainlab.tracking import Run, Tracker
    from trainlab.train import TrainResult

PROCESS_MEMORY = "training process memory (RSS, MB)"
MACHINE_CPU = "the machine's CPU (%, all processes)"
# metric -> panel; process_rss_mb is train.PROCESS_RSS (train.py imports torch); MLflow's system/ metrics are the
# whole machine's, so its memory is left out: other processes share it
SYSTEM = {"process_rss_mb": PROCESS_MEMORY, "system/cpu_utilization_percentage": MACHINE_CPU}
CONFUSED_PAIRS, PER_PAIR, MISTAKES = 3, 6, 12
GRID_TILE_PX = 48  # the augmentation grid's small images are enlarged to about this width


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
    test: Evaluation
    images: np.ndarray | None = None  # the test split's images, in the predictions' order
    train_images: np.ndarray | None = None  # the training split's images: the augmentation grid's samples
    system: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# -- reading a run back ---------------------------------------------------------------------------------


def view_from_record(record: Record, row: RunRow, *, with_images: bool = True) -> RunView:
    """A run's page data from MLflow alone (a teammate's run on the team server has no folder here)."""
    from trainlab.evaluate import classification_report

    documents = {}
    for name in ("config.yaml", "data.json", "model.json", "environment.json"):
        try:
            documents[name] = record.json_artifact(row, name)
        except ArtifactNotFound:  # an older run, or an evaluation run: the page shows what there is
            documents[name] = {}
    predictions = record.predictions(row)
    test = classification_report(predictions.y_true, predictions.probs, predictions.class_names)
    view = RunView(row.run_id, row.experiment, row.status, row.start_ms, record.end_ms(row), row.params, row.tags,
                   documents["config.yaml"] or {}, documents["data.json"] or {}, documents["model.json"] or {},
                   documents["environment.json"] or {}, record.history(row), test)
    view.system = {SYSTEM[k]: v for k, v in record.system_metrics(row, list(SYSTEM)).items()}
    if with_images:
        splits = run_splits(view)
        if splits is not None:
            view.images, view.train_images = splits.test_x, splits.train_x
    return view


def run_splits(view: RunView) -> Splits | None:
    """The run's train/validation/test splits, when this machine has the run's data (same fingerprint)."""
    from trainlab.config import validate_config
    from trainlab.data import data_fingerprint, load_data

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
    return splits


# -- the run page ---------------------------------------------------------------------------------------


def run_page(view: RunView) -> Page:
    import yaml

    from trainlab.plots import evaluation_pngs, learning_curves_figure, png_data_uri, reliability_figure

    ev = view.test
    monitor = view.params.get("train.monitor", "val_accuracy")
    best = _int(view.tags.get("best_epoch")) or best_epoch(view.history, monitor)
    sections = []

    epochs = f"{len(view.history)} epoch{'s' if len(view.history) != 1 else ''}"
    curves = Section("Learning curves", "curves", notes=[f"{epochs}; the dashed line marks the best epoch by {monitor} "
                                                         "(its checkpoint is the model tested)."])
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
    pngs = evaluation_pngs(ev)  # drawn once (plots.with_figures): MLflow stores the same PNGs
    results.figures.append(Figure(png_data_uri(pngs["confusion_matrix"]), "confusion matrix: counts and row-normalised"))
    sections.append(results)

    if ev.roc:
        sections.append(Section("ROC and precision-recall curves", "curves-roc", figures=[
            Figure(png_data_uri(pngs["roc_pr"]), "ROC and PR curves")]))

    prob_true, prob_pred, counts, ece = calibration(ev)
    sections.append(Section("Calibration", "calibration", figures=[
        Figure(png_data_uri(reliability_figure(prob_true, prob_pred, counts, ece)), "reliability diagram")],
        notes=[f"Expected calibration error {ece:.4f}: the average gap between how sure the model is and how often "
               "it is right, over 10 confidence bins weighted by their images."]))

    sections.append(mistakes_section(ev, view.images))

    augmentation = augmentation_section(view)
    if augmentation is not None:
        sections.append(augmentation)

    sections.append(system_section(view))

    for note in view.notes:
        sections[-1].notes.append(note)
    return Page(f"Run {view.run_id}", f"experiment {view.experiment} · {view.status.lower()} · "
                f"test accuracy {m.get('accuracy', math.nan):.4f}", run_facts(view, best),
                sections, yaml.safe_dump(view.config, sort_keys=False) if view.config else "")


def augmentation_section(view: RunView) -> Section | None:
    """What the run's augmentation did to training images (a grid of draws), or None when it had none."""
    from pydantic import ValidationError

    from trainlab.augment import augmented_grid
    from trainlab.config import AugmentConfig

    try:
        cfg = AugmentConfig.model_validate(view.config.get("data", {}).get("augment") or {})
    except ValidationError:  # a config from another trainlab version: nothing sure to show
        return None
    if not cfg.active():
        return None
    section = Section("Augmentation", "augmentation", notes=[
        f"{augmentation_summary(cfg)}; training batches only (never validation or test images), drawn from the "
        "run's seed."])
    if view.train_images is None:
        section.notes.append("Augmented samples not shown: the run's training images cannot be loaded here.")
        return section
    grid = augmented_grid(view.train_images, cfg, seed=int(view.config.get("seed", 0)))
    zoom = max(1, GRID_TILE_PX // view.train_images.shape[-1])  # 8x8 digits would be specks
    section.figures.append(Figure(image_uri(grid.repeat(zoom, axis=1).repeat(zoom, axis=2)),
                                  "training images (first column) and four augmented draws of each"))
    return section


def augmentation_summary(cfg: AugmentConfig) -> str:
    """The active options in words: 'flip, translate ±4 px, cutout 8 px'."""
    parts = [
        f"random-resized crop (area ≥ {cfg.resized_crop:.0%})" if cfg.resized_crop < 1.0 else "",
        f"translate ±{cfg.translate} px" if cfg.translate else "",
        "flip" if cfg.flip else "",
        f"colour jitter ±{cfg.color_jitter:g}" if cfg.color_jitter else "",
        f"cutout {cfg.cutout} px" if cfg.cutout else "",
    ]
    text = ", ".join(p for p in parts if p)
    return text[0].upper() + text[1:]


def system_section(view: RunView) -> Section:
    """The training process's memory and the machine's CPU over the run, and the epochs' times."""
    from trainlab.plots import png_data_uri, system_figure

    system = Section("System", "system")
    series = {name: view.system[name] for name in (PROCESS_MEMORY, MACHINE_CPU) if view.system.get(name, ([], []))[1]}
    drawn = {name: points for name, points in series.items() if len(points[1]) >= 2}  # one sample is no curve
    if drawn:
        system.figures.append(Figure(png_data_uri(system_figure(drawn)), " and ".join(drawn) + ", over the run"))
    if series:
        system.notes.append(" ".join(text for name, text in (
            (PROCESS_MEMORY, "Memory: what the training process itself held (resident set size) at each epoch's end."),
            (MACHINE_CPU, "CPU: the whole machine, every process on it, as MLflow sampled it while the run lived."))
            if name in series))
    for name in set(series) - set(drawn):
        system.notes.append(f"{name[0].upper()}{name[1:]}: one sample ({series[name][1][0]:,.0f}), too few to draw "
                            "a curve.")
    if PROCESS_MEMORY not in series:
        system.notes.append("The training process's memory was not recorded for this run (it is logged each epoch as "
                            "process_rss_mb; the machine's memory, which other processes share, is not the run's).")
    if MACHINE_CPU not in series:
        system.notes.append("No CPU samples recorded (MLflow samples the machine while a run lives).")
    measured = {"process memory (RSS, MB)": (series.get(PROCESS_MEMORY, ([], []))[1], "{:,.0f}"),
                "epoch time (s)": ([h["epoch_seconds"] for h in view.history if "epoch_seconds" in h], "{:.2f}"),
                "training images/s": ([h["images_per_second"] for h in view.history if "images_per_second" in h],
                                      "{:,.0f}")}
    rows = [[name, *(fmt.format(f(values)) for f in (np.median, min, max))]
            for name, (values, fmt) in measured.items() if values]
    if rows:
        system.tables.append(Table(["", "median", "min", "max"], rows))
    return system


def run_facts(view: RunView, best: int | None) -> list[tuple[str, str]]:
    data, env = view.data, view.environment
    splits = data.get("splits", {})
    duration = (view.end_ms - view.start_ms) / 1000 if view.end_ms and view.start_ms else None
    facts = [
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
    if int(view.tags.get("distributed.world_size") or 1) > 1:  # several processes trained it (the last attempt)
        hosts = view.tags.get("distributed.hosts", "").split(",")
        where = hosts[0] if len(set(hosts)) == 1 else f"{len(set(hosts))} machines"
        facts.append(("processes", f"{view.tags['distributed.world_size']} on {where} "
                                   f"({view.tags.get('distributed.backend', '?')}), "
                                   f"{view.tags.get('distributed.batch_per_rank', '?')} images each per step"))
    if backbone := backbone_fact(view):
        facts.insert(next(i for i, (name, _) in enumerate(facts) if name == "model") + 1, ("backbone", backbone))
    return facts


def backbone_fact(view: RunView) -> str | None:
    """A pretrained backbone's weights (file and SHA-256) and how it was fine-tuned; None for other models."""
    pretrained = view.model.get("pretrained")
    if not pretrained:
        return None
    weights = (f"weights {pretrained.get('file', '?')} (SHA-256 {pretrained.get('sha256', '?')[:12]}…)"
               if pretrained.get("weights", "none") != "none" else "random weights")
    finetune = view.params.get("train.finetune", "full")
    how = finetune.replace("_", " ")
    if finetune == "full":
        blocks = view.params.get("train.last_n_blocks", "None")
        how += (f" · last {blocks} blocks" if blocks not in ("None", "") else "") + \
            f" · backbone at {view.params.get('train.backbone_lr_scale', '?')} of the learning rate" + \
            (" · BatchNorm statistics frozen" if view.params.get("train.freeze_batchnorm") == "True" else "")
    return f"{weights} · {how}"


def best_epoch(history: list[dict[str, float]], monitor: str) -> int | None:
    values = [(h[monitor], int(h.get("step", i))) for i, h in enumerate(history, 1) if h.get(monitor) is not None]
    if not values:
        return None
    pick = min if "loss" in monitor else max
    return pick(values, key=lambda v: v[0])[1]


def _int(text: str | None) -> int | None:
    return int(float(text)) if text not in (None, "") else None


def calibration(ev: Evaluation, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
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


def mistakes_section(ev: Evaluation, images: np.ndarray | None) -> Section:
    """The most confused class pairs with example images, and the most confident mistakes."""
    names = list(ev.class_names)
    section = Section("Mistakes", "mistakes")
    off = ev.confusion.astype(float).copy()
    np.fill_diagonal(off, 0)
    pairs = [(int(i), int(j)) for i, j in zip(*np.unravel_index(np.argsort(-off, axis=None), off.shape))
             if off[i, j] > 0][:CONFUSED_PAIRS]
    if not pairs:  # nothing to tabulate: an empty table header would only puzzle
        section.notes.append("No mistakes on the test split.")
        return section
    section.tables.append(Table(["true class", "predicted as", "images", "share of the class"],
                                [[names[i], names[j], str(int(off[i, j])),
                                  f"{off[i, j] / max(1, ev.confusion[i].sum()):.1%}"] for i, j in pairs],
                                caption="most confused pairs"))
    if images is None:
        return section
    pred = ev.y_pred
    for i, j in pairs:
        where = np.flatnonzero((ev.y_true == i) & (pred == j))
        where = where[np.argsort(-ev.probs[where, j])][:PER_PAIR]
        section.galleries.append(Gallery(f"{names[i]} taken for {names[j]} (true → predicted, probability)",
                                         [mistake_tile(ev, images, int(k)) for k in where]))
    wrong = np.flatnonzero(pred != ev.y_true)
    wrong = wrong[np.argsort(-ev.probs[wrong].max(axis=1))][:MISTAKES]
    if len(wrong):
        section.galleries.append(Gallery("the most confident mistakes (true → predicted, probability)",
                                         [mistake_tile(ev, images, int(k)) for k in wrong]))
    return section


def mistake_tile(ev: Evaluation, images: np.ndarray, k: int) -> Figure:
    """Test image ``k``, captioned true → predicted with the predicted class's probability."""
    names = list(ev.class_names)
    true, pred = int(ev.y_true[k]), int(ev.y_pred[k])
    return Figure(image_uri(images[k]),
                  f"test image #{k}: true {names[true]}, predicted {names[pred]} with probability "
                  f"{ev.probs[k, pred]:.2f} ({names[true]}: {ev.probs[k, true]:.2f})",
                  caption=f"{names[true]} → {names[pred]} {ev.probs[k, pred]:.2f}")


def image_uri(image: np.ndarray) -> str:
    """A test image (C, H, W, uint8) as a small inline PNG."""
    from PIL import Image

    array = np.asarray(image)
    array = array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def sampled_system(trackers: Sequence[Tracker], started_ms: int,
                   failed: Collection[str] = ()) -> dict[str, tuple[list[float], list[float]]]:
    """MLflow's system metrics of the run so far: name -> (seconds since ``started_ms``, values); none when MLflow
    is among the ``failed`` backends or cannot answer (the page then has no system panel; the run goes on)."""
    mlflow = next((t for t in trackers if t.name == "mlflow" and t.name not in failed), None)
    system: dict[str, tuple[list[float], list[float]]] = {}
    if mlflow is not None:
        try:
            for key, name in SYSTEM.items():
                points = mlflow.sampled_history(key)
                if points:
                    system[name] = ([(t - started_ms) / 1000 for t, _ in points], [v for _, v in points])
        except Exception:  # a server gone silent, a recording process gone: its failure is said by the run
            return {}
    return system


def write_training_report(run: Run, system: dict[str, tuple[list[float], list[float]]], cfg: Config,
                          docs: RunDocuments, result: TrainResult, test: Evaluation, splits: Splits,
                          started_ms: int) -> None:
    """The run's page, from what this process holds and MLflow's system metrics (``sampled_system``), logged with
    the run."""
    import time

    from trainlab.config import recorded_config

    system = dict(system)
    if result.process_memory:  # this attempt's epochs from this process: the tracker may not have stored the last yet
        seconds, values = system.get(PROCESS_MEMORY, ([], []))
        earlier = [(s, v) for s, v in zip(seconds, values) if s < 0]  # a resumed run's earlier attempts
        here = [((t * 1000 - started_ms) / 1000, mb) for t, mb in result.process_memory]
        system[PROCESS_MEMORY] = ([s for s, _ in earlier + here], [v for _, v in earlier + here])
    tags = {**docs.tags, "best_epoch": str(result.best_epoch), "stop_reason": result.stop_reason}
    view = RunView(run.info.run_id, cfg.name, "FINISHED", started_ms, int(time.time() * 1000), docs.params, tags,
                   recorded_config(cfg), docs.data, docs.model, docs.environment, result.history, test,
                   images=splits.test_x, train_images=splits.train_x, system=system)
    path, _ = write_page(run_page(view), run.run_dir / REPORT)
    run.log_artifact(path)
