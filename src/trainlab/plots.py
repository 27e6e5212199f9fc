"""Figures of a run's evaluation: confusion matrix, ROC and PR curves (matplotlib).

Each function returns a matplotlib Figure built without pyplot's global state;
trackers store them (MLflow figures) and the report embeds them.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from trainlab.evaluate import Evaluation


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
