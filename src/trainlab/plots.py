"""Figures of a run and of the pages: its evaluation (confusion matrix, ROC and PR curves), learning curves, ...

Each function returns a matplotlib Figure built without pyplot's global state. A run's test figures are drawn
once (``with_figures``): its page embeds them and MLflow stores the same PNGs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from trainlab.evaluate import Evaluation  # (importing it would import torch)


def evaluation_pngs(ev: Evaluation) -> dict[str, bytes]:
    """A test evaluation's figures as PNGs: ``confusion_matrix`` (counts and row-normalised) and ``roc_pr`` (when
    there are curves); the ones it carries (``with_figures``) when it does."""
    if ev.figures is not None:
        return ev.figures
    pngs = {"confusion_matrix": png_bytes(confusion_pair_figure(ev.confusion, list(ev.class_names)))}
    if ev.roc:
        pngs["roc_pr"] = png_bytes(roc_pr_figure(ev.roc, ev.pr, ev.metrics.get("auroc", math.nan)))
    return pngs


def with_figures(ev: Evaluation) -> Evaluation:
    """``ev`` carrying its figures, drawn once: the run page shows them and MLflow stores the same PNGs."""
    from dataclasses import replace

    return replace(ev, figures=evaluation_pngs(ev))


# -- the report's figures: each a picture beside its numbers ----------------------------------------------
# A page shows its PNGs at their own size (DPI pixels per inch) when they fit the page's column: at 1280 px,
# a section holds PAGE_WIDTH_PX (report.html.j2: main 1200 px wide, a section's padding 2 x 18 px). So every
# figure is at most PAGE_WIDTH_PX wide, and every text on it at least MIN_TEXT_PT: 10 px on the screen.

DPI = 80
PAGE_WIDTH_PX = 1164
MAX_WIDTH_IN = PAGE_WIDTH_PX / DPI - 0.1
MIN_TEXT_PT = 9.0  # 10 px at DPI; matplotlib's defaults (10 pt and up) are above it
SMALL = MIN_TEXT_PT
TRAIN, VALIDATION, NEUTRAL = "C0", "C1", "#4a5568"

CURVES = (("loss", (("train_loss", "train", TRAIN), ("val_loss", "validation", VALIDATION))),
          ("accuracy", (("train_accuracy", "train", TRAIN), ("val_accuracy", "validation", VALIDATION))),
          ("validation macro F1 and AUROC", (("val_macro_f1", "validation macro F1", "C2"),
                                             ("val_auroc", "validation AUROC", "C3"))),
          ("learning rate", (("lr", "", NEUTRAL),)), ("training images/s", (("images_per_second", "", NEUTRAL),)),
          ("epoch time (s)", (("epoch_seconds", "", NEUTRAL),)))


def _marker_size(points: int) -> float:
    """Big dots for a few points (a 1-epoch run is one dot per curve), none on a long curve."""
    return 7.0 if points <= 5 else 4.0 if points <= 40 else 0.0


def _integer_axis(ax: Axes, values: list[float], nbins: int | str = "auto") -> None:
    """x ticks on whole numbers only (epochs, trials); a few values get a tick each, half a step in from the edges."""
    from matplotlib.ticker import MaxNLocator

    finite = [v for v in values if v == v]
    if finite and max(finite) - min(finite) < 12:
        low, high = int(np.floor(min(finite))), int(np.ceil(max(finite)))
        ax.set_xticks(range(low, high + 1))
        ax.set_xlim(low - 0.5, high + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=nbins, integer=True))


TICK_GAP_PT = 6.0  # the least room between two x tick labels: about a character of the labels' size


def _separate_x_labels(ax: Axes) -> None:
    """Tilt the x tick labels when, drawn, two of them would touch (long numbers on a narrow panel); upright if
    tilted they still would."""
    fig = ax.get_figure()
    for rotation in (30, 90):
        fig.draw_without_rendering()
        low, high = sorted(ax.get_xlim())
        boxes = sorted((label.get_window_extent() for label, x in zip(ax.get_xticklabels(), ax.get_xticks())
                        if label.get_visible() and label.get_text() and low <= x <= high), key=lambda box: box.x0)
        gap = TICK_GAP_PT * fig.dpi / 72
        if all(right.x0 - left.x1 >= gap for left, right in zip(boxes, boxes[1:])):
            return
        ax.tick_params(axis="x", labelrotation=rotation, labelrotation_mode="xtick")


def _label_single(ax: Axes, x: float, y: float, color: str) -> None:
    """A lone point carries its value: one dot on an axis of made-up ticks says little on its own."""
    text = f"{y:,.0f}" if abs(y) >= 1000 else f"{y:.4g}"
    ax.annotate(text, (x, y), xytext=(8, 0), textcoords="offset points", va="center", fontsize=SMALL, color=color)


def learning_curves_figure(history: list[dict[str, float]], best_epoch: int | None, monitor: str) -> Figure:
    """Per-epoch curves, train against validation, the best epoch (by ``monitor``) marked; one legend below."""
    fig = Figure(figsize=(10, 5.6), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    epochs = [int(h.get("step", i)) for i, h in enumerate(history, 1)]
    size = _marker_size(len(epochs))
    legend: dict[str, Any] = {}
    for ax, (title, keys) in zip(axes, CURVES):
        for key, label, color in keys:
            values = [h.get(key) for h in history]
            if all(v is None for v in values):
                continue
            ys = [float("nan") if v is None else float(v) for v in values]
            (line,) = ax.plot(epochs, ys, marker="o", ms=size, lw=1.4, color=color, zorder=3)
            if label:
                legend.setdefault(label, line)
            if len(epochs) == 1 and ys[0] == ys[0]:
                _label_single(ax, epochs[0], ys[0], color)
        if best_epoch:
            best = ax.axvline(best_epoch, c="grey", ls="--", lw=0.9, zorder=1)
            legend.setdefault(f"best epoch (by {monitor.replace('_', ' ')})", best)
        ax.set(title=title, xlabel="epoch")
        _integer_axis(ax, [float(e) for e in epochs])
    if legend:
        labels = sorted(legend, key=lambda name: name.startswith("best epoch"))
        fig.legend([legend[k] for k in labels], labels, loc="outside lower center", ncol=len(labels), frameon=False)
    return fig


def overlaid_curves_figure(histories: dict[str, list[dict[str, float]]]) -> Figure:
    """Several runs' validation loss and accuracy and training loss on shared axes, one colour per run."""
    fig = Figure(figsize=(10, 3.9), layout="constrained")
    every: list[float] = []
    for ax, key in zip(fig.subplots(1, 3), ("val_loss", "val_accuracy", "train_loss")):
        for name, history in histories.items():
            points = [(h.get("step", i), h[key]) for i, h in enumerate(history, 1) if key in h]
            every += [float(e) for e, _ in points]
            ax.plot([e for e, _ in points], [v for _, v in points], marker="o", ms=_marker_size(len(points)), lw=1.4,
                    label=name)
        ax.set(title=key.replace("_", " "), xlabel="epoch")
        _integer_axis(ax, every)
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=max(1, len(histories)),
               frameon=False)
    return fig


def confusion_pair_figure(confusion: np.ndarray, class_names: list[str] | tuple[str, ...],
                          title: str = "Confusion matrix (test split)") -> Figure:
    """Counts and row-normalised shares, side by side (stacked beyond 12 classes): rows are the true class,
    columns the prediction. Cells too small for a legible number (beyond 30 classes) show colour only."""
    from sklearn.metrics import ConfusionMatrixDisplay

    k = len(class_names)
    stacked = k > 12
    size = min(max(3.6, 0.55 * k + 1.8), MAX_WIDTH_IN if stacked else (MAX_WIDTH_IN - 0.2) / 2)
    fig = Figure(figsize=(size, 2 * size) if stacked else (2 * size + 0.2, size), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.1)  # the titles' tops clear the edge
    rows = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, rows, out=np.zeros(confusion.shape, dtype=float), where=rows > 0)
    panels = fig.subplots(2, 1) if stacked else fig.subplots(1, 2)
    for ax, matrix, what, fmt in zip(panels, (confusion, shares), ("counts", "share of the true class"),
                                     ("d", ".2f")):
        ConfusionMatrixDisplay(matrix, display_labels=list(class_names)).plot(
            ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45, values_format=fmt, include_values=k <= 30,
            text_kw={"fontsize": 10 if k <= 10 else SMALL})
        ax.set_title(f"{title}:\n{what}", fontsize=10)  # two lines: one is wider than a 3-class panel
    return fig


def roc_pr_figure(roc: dict[str, dict[str, list[float]]], pr: dict[str, dict[str, list[float]]],
                  auroc: float) -> Figure:
    """ROC and precision-recall curves per class; one legend of the classes beside them, not over them."""
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    for name, curve in roc.items():
        left.plot(curve["fpr"], curve["tpr"], lw=1.1, label=name)
    left.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    left.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, one-vs-rest (AUROC {auroc:.4f})")
    for name, curve in pr.items():
        right.plot(curve["recall"], curve["precision"], lw=1.1, label=name)
    right.set(xlabel="recall", ylabel="precision", title="Precision-recall, one-vs-rest", ylim=(0, 1.02))
    if len(roc) <= 30:
        fig.legend(*left.get_legend_handles_labels(), loc="outside right center", title="class",
                   ncol=1 if len(roc) <= 15 else 2)
    return fig


def reliability_figure(prob_true: np.ndarray, prob_pred: np.ndarray, counts: np.ndarray, ece: float) -> Figure:
    """Reliability diagram: per confidence bin, how often the top prediction is right; bars: images per bin, on a
    twin axis drawn behind, so that the diagonal and the curve stay visible where most images are (0.9-1.0)."""
    fig = Figure(figsize=(5.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="perfectly calibrated")
    ax.plot(prob_pred, prob_true, marker="o", lw=1.2, label="this model")
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy in the bin", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"Calibration (expected calibration error {ece:.4f})", fontsize=10)
    share = ax.twinx()
    share.bar((np.arange(len(counts)) + 0.5) / len(counts), counts, width=1 / len(counts), alpha=0.15, color="C0",
              label="test images per bin")
    share.set_ylabel("test images per bin")
    ax.set_zorder(share.get_zorder() + 1)  # the lines over the bars (a twin axis is drawn after its host) ...
    ax.patch.set_visible(False)  # ... and the host's background not over the bars
    handles = ax.get_legend_handles_labels()[0] + share.get_legend_handles_labels()[0]
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncol=3, frameon=False)
    return fig


def system_figure(series: dict[str, tuple[list[float], list[float]]]) -> Figure:
    """Recorded measurements over the run's time, a panel each: title -> (seconds since start, values)."""
    panels = max(1, len(series))
    fig = Figure(figsize=(min(5.0 * panels, MAX_WIDTH_IN), 3.2), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False).ravel()
    for ax, (name, (seconds, values)) in zip(axes, series.items()):
        ax.plot(seconds, values, lw=1.2, marker="o", ms=_marker_size(len(values)), color=NEUTRAL)
        if len(values) == 1:
            _label_single(ax, seconds[0], values[0], NEUTRAL)
        ax.set_title(name, fontsize=10)
        ax.set(xlabel="seconds since the run started", ylim=(0, max(max(values, default=0) * 1.15, 1.0)))  # from 0
    return fig


def scatter_figure(points: dict[str, tuple[list[float], list[float]]], xlabel: str, ylabel: str, title: str,
                   log_x: bool = False, integer_x: bool = False) -> Figure:
    """One panel: y against x for each named group of points (a legend beside the panel when several); at most six
    x ticks, tilted if they would still touch."""
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(5.4, 3.8), layout="constrained")
    ax = fig.add_subplot()
    for name, (xs, ys) in points.items():
        ax.scatter(xs, ys, s=24, label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=10)
    if log_x:
        ax.set_xscale("log")
    elif integer_x:
        _integer_axis(ax, [float(x) for xs, _ in points.values() for x in xs], nbins=5)
    else:  # a few ticks: a hyperparameter's values are long numbers (0.9675) on a narrow panel
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    if len(points) > 1:
        fig.legend(loc="outside right upper")
    _separate_x_labels(ax)
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
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks([0, 1], ["low", "high"])
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=metric)
    ax.set_title("Trials across their hyperparameters (each axis scaled to its range)", fontsize=10)
    return fig


def strip_figure(groups: dict[str, list[float]], xlabel: str, title: str) -> Figure:
    """A row of dots per category: every value shown, on an axis fitted to the values (not from zero), with at
    most six x ticks, tilted if they would still touch."""
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(5.4, 0.45 * len(groups) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    for row, values in enumerate(groups.values()):
        ax.scatter(values, [row] * len(values), s=28)
    ax.set_yticks(range(len(groups)), list(groups))
    ax.set_ylim(len(groups) - 0.5, -0.5)
    ax.set(xlabel=xlabel)
    ax.set_title(title, fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # the metric's values are long numbers on a narrow panel
    _separate_x_labels(ax)
    return fig


def bars_figure(values: dict[str, float], xlabel: str, title: str) -> Figure:
    fig = Figure(figsize=(5.4, 0.45 * len(values) + 1.4), layout="constrained")
    ax = fig.add_subplot()
    names = list(values)
    ax.barh(names, [values[n] for n in names])
    ax.invert_yaxis()
    ax.set(xlabel=xlabel)
    ax.set_title(title, fontsize=10)
    return fig


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def png_data_uri(fig: Figure | bytes, dpi: int = DPI) -> str:
    """The figure (or its PNG) as an inline PNG (the report holds no file or request of its own)."""
    import base64

    png = fig if isinstance(fig, bytes) else png_bytes(fig, dpi)
    return "data:image/png;base64," + base64.b64encode(png).decode()
