"""Figures of a run: its evaluation (confusion matrix, ROC and PR curves) for the trackers, and the report's.

Each function returns a matplotlib Figure built without pyplot's global state;
trackers store them (MLflow figures) and the report embeds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from trainlab.evaluate import Evaluation  # (importing it would import torch)


def confusion_matrix_figure(ev: Evaluation) -> Figure:
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.55 * len(ev.class_names) + 2)
    fig = Figure(figsize=(size, size), layout="constrained")
    ax = fig.add_subplot()
    ConfusionMatrixDisplay(ev.confusion, display_labels=list(ev.class_names)).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45
    )
    ax.set_title("Confusion matrix (test split)")
    return fig


def _curves_figure(curves: dict[str, dict[str, list[float]]], x: str, y: str, title: str,
                   diagonal: bool = False) -> Figure:
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.add_subplot()
    for name, curve in curves.items():
        ax.plot(curve[x], curve[y], lw=1.2, label=name)
    if diagonal:
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel=x, ylabel=y, title=title, ylim=(0, 1.02))
    ax.legend(fontsize="small", ncol=2)
    return fig


def roc_figure(ev: Evaluation) -> Figure:
    return _curves_figure(ev.roc, "fpr", "tpr", f"ROC, one-vs-rest (macro AUROC {ev.metrics['auroc']:.4f})",
                          diagonal=True)


def pr_figure(ev: Evaluation) -> Figure:
    return _curves_figure(ev.pr, "recall", "precision", "Precision-recall, one-vs-rest")


def evaluation_figures(ev: Evaluation) -> dict[str, Figure]:
    """name -> figure, for every plot of a test evaluation."""
    return {"confusion_matrix": confusion_matrix_figure(ev), "roc": roc_figure(ev), "pr": pr_figure(ev)}


# -- the report's figures: each a picture beside its numbers ----------------------------------------------

CURVES = (("loss", ("train_loss", "val_loss")), ("accuracy", ("train_accuracy", "val_accuracy")),
          ("val macro F1 / AUROC", ("val_macro_f1", "val_auroc")), ("learning rate", ("lr",)),
          ("images/s", ("images_per_second",)), ("epoch time (s)", ("epoch_seconds",)))


def learning_curves_figure(history: list[dict[str, float]], best_epoch: int | None, monitor: str) -> Figure:
    """Per-epoch curves, train against validation, the best epoch (by ``monitor``) marked."""
    fig = Figure(figsize=(10, 5.2), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    epochs = [int(h.get("step", i)) for i, h in enumerate(history, 1)]
    for ax, (title, keys) in zip(axes, CURVES):
        for key in keys:
            values = [h.get(key) for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [float("nan") if v is None else v for v in values], marker=".", lw=1.2,
                        label=key.replace("_", " "))
        if best_epoch:
            ax.axvline(best_epoch, c="grey", ls="--", lw=0.8, label=f"best epoch ({monitor.replace('_', ' ')})")
        ax.set(title=title, xlabel="epoch")
        ax.tick_params(labelsize="small")
        if len(keys) > 1 or best_epoch:
            ax.legend(fontsize="x-small", loc="upper right" if "loss" in title or "time" in title else "lower right")
    return fig


def overlaid_curves_figure(histories: dict[str, list[dict[str, float]]]) -> Figure:
    """Several runs' validation loss and accuracy and training loss on shared axes, one colour per run."""
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    for ax, key in zip(fig.subplots(1, 3), ("val_loss", "val_accuracy", "train_loss")):
        for name, history in histories.items():
            points = [(h.get("step", i), h[key]) for i, h in enumerate(history, 1) if key in h]
            ax.plot([e for e, _ in points], [v for _, v in points], marker=".", lw=1.2, label=name)
        ax.set(title=key.replace("_", " "), xlabel="epoch")
        ax.legend(fontsize="x-small", loc="lower right" if "accuracy" in key else "upper right")
    return fig


def confusion_pair_figure(confusion: np.ndarray, class_names: list[str] | tuple[str, ...],
                          title: str = "Confusion matrix (test split)") -> Figure:
    """Counts and row-normalised shares side by side: rows are the true class, columns the prediction."""
    from sklearn.metrics import ConfusionMatrixDisplay

    k = len(class_names)
    size = max(3.2, 0.42 * k + 1.6)
    fig = Figure(figsize=(2 * size + 0.5, size), layout="constrained")
    rows = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, rows, out=np.zeros(confusion.shape, dtype=float), where=rows > 0)
    for ax, matrix, what, fmt in zip(fig.subplots(1, 2), (confusion, shares), ("counts", "share of the true class"),
                                     ("d", ".2f")):
        ConfusionMatrixDisplay(matrix, display_labels=list(class_names)).plot(
            ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45, values_format=fmt,
            text_kw={"fontsize": "x-small" if k > 6 else "small"})
        ax.set_title(f"{title}: {what}", fontsize="small")
    return fig


def roc_pr_figure(roc: dict[str, dict[str, list[float]]], pr: dict[str, dict[str, list[float]]],
                  auroc: float) -> Figure:
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for name, curve in roc.items():
        left.plot(curve["fpr"], curve["tpr"], lw=1.1, label=name)
    left.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    left.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, one-vs-rest (macro AUROC {auroc:.4f})")
    for name, curve in pr.items():
        right.plot(curve["recall"], curve["precision"], lw=1.1, label=name)
    right.set(xlabel="recall", ylabel="precision", title="Precision-recall, one-vs-rest", ylim=(0, 1.02))
    right.legend(fontsize="x-small", ncol=2, loc="lower left")  # "best" searches every point: 0.5 s
    return fig


def reliability_figure(prob_true: np.ndarray, prob_pred: np.ndarray, counts: np.ndarray, ece: float) -> Figure:
    """Reliability diagram: per confidence bin, how often the top prediction is right; bars: images per bin."""
    fig = Figure(figsize=(5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="perfectly calibrated")
    ax.plot(prob_pred, prob_true, marker="o", lw=1.2, label="this model")
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy in the bin", xlim=(0, 1), ylim=(0, 1.02),
           title=f"Calibration (expected calibration error {ece:.4f})")
    share = ax.twinx()
    share.bar((np.arange(len(counts)) + 0.5) / len(counts), counts, width=1 / len(counts), alpha=0.15, color="C0")
    share.set_ylabel("test images per bin")
    ax.legend(fontsize="x-small", loc="upper left")
    return fig


def system_figure(series: dict[str, tuple[list[float], list[float]]]) -> Figure:
    """Recorded system metrics over the run's time: name -> (seconds since start, values)."""
    fig = Figure(figsize=(10, 3), layout="constrained")
    axes = fig.subplots(1, max(1, len(series)), squeeze=False).ravel()
    for ax, (name, (seconds, values)) in zip(axes, series.items()):
        ax.plot(seconds, values, lw=1.1, marker=".")
        ax.set(title=f"{name}, sampled by MLflow", xlabel="seconds since the run started")
        ax.tick_params(labelsize="small")
    return fig


def scatter_figure(points: dict[str, tuple[list[float], list[float]]], xlabel: str, ylabel: str, title: str,
                   log_x: bool = False) -> Figure:
    """One panel: y against x for each named group of points."""
    fig = Figure(figsize=(5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for name, (xs, ys) in points.items():
        ax.scatter(xs, ys, s=18, label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if log_x:
        ax.set_xscale("log")
    if len(points) > 1:
        ax.legend(fontsize="x-small", loc="lower right")
    return fig


def parallel_figure(columns: list[str], rows: list[list[float]], values: list[float], metric: str) -> Figure:
    """Parallel coordinates: each trial a line across its (scaled) hyperparameters, coloured by ``metric``."""
    from matplotlib import cm, colors

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax = fig.add_subplot()
    data = np.asarray(rows, dtype=float)
    low, high = np.nanmin(data, axis=0), np.nanmax(data, axis=0)
    scaled = (data - low) / np.where(high > low, high - low, 1)
    norm = colors.Normalize(min(values), max(values))
    for row, value in zip(scaled, values):
        ax.plot(range(len(columns)), row, color=cm.viridis(norm(value)), lw=1.2, alpha=0.8)
    ax.set_xticks(range(len(columns)), columns, fontsize="small")
    ax.set_yticks([0, 1], ["low", "high"])
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=metric)
    ax.set_title("Trials across their hyperparameters (each axis scaled to its range)")
    return fig


def strip_figure(groups: dict[str, list[float]], xlabel: str, title: str) -> Figure:
    """A row of dots per category: every value shown, on an axis fitted to the values (not from zero)."""
    fig = Figure(figsize=(5, 0.4 * len(groups) + 1.3), layout="constrained")
    ax = fig.add_subplot()
    for row, values in enumerate(groups.values()):
        ax.scatter(values, [row] * len(values), s=22)
    ax.set_yticks(range(len(groups)), list(groups), fontsize="small")
    ax.invert_yaxis()
    ax.set(xlabel=xlabel, title=title)
    return fig


def bars_figure(values: dict[str, float], xlabel: str, title: str) -> Figure:
    fig = Figure(figsize=(5, 0.4 * len(values) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    names = list(values)
    ax.barh(names, [values[n] for n in names])
    ax.invert_yaxis()
    ax.set(xlabel=xlabel, title=title)
    return fig


def png_data_uri(fig: Figure, dpi: int = 80) -> str:
    """The figure as an inline PNG (the report holds no file or request of its own)."""
    import base64
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
