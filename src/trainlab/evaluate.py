"""Evaluation on the test split: metrics, per-class report, confusion matrix, curves, predictions.

Everything is computed by scikit-learn from the model's probabilities.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported by the functions that run a model: a backend's process reads an Evaluation
    import torch  # without it
    from torch import nn

CURVE_POINTS = 500  # per class; enough to draw the curve, small enough to store with every run


@dataclass(frozen=True)
class Evaluation:
    class_names: tuple[str, ...]
    metrics: dict[str, float]  # accuracy, macro precision/recall/F1, AUROC, log loss, images/s
    per_class: list[dict[str, Any]]  # class, precision, recall, f1, support
    confusion: np.ndarray  # rows: true class, columns: predicted class
    roc: dict[str, dict[str, list[float]]]  # class -> fpr, tpr, thresholds
    pr: dict[str, dict[str, list[float]]]  # class -> precision, recall, thresholds
    y_true: np.ndarray
    probs: np.ndarray
    precision: str = "fp32"  # of the model's arithmetic: fp32, or int8 (`--int8`)
    figures: dict[str, bytes] | None = None  # its figures as PNGs once drawn (plots.with_figures): page and MLflow

    @property
    def y_pred(self) -> np.ndarray:
        return np.asarray(self.probs.argmax(axis=1))

    @cached_property
    def predictions(self) -> tuple[list[str], list[list[Any]]]:
        """Columns and rows: sample index, true label, predicted label, one probability per class."""
        columns = ["index", "true_label", "predicted_label", *(f"p_{name}" for name in self.class_names)]
        names = np.asarray(self.class_names, dtype=object)
        rows = [
            [i, names[t], names[p], *map(float, row)]
            for i, (t, p, row) in enumerate(zip(self.y_true, self.y_pred, self.probs.round(6)))
        ]
        return columns, rows


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, class_names: Sequence[str],
             batch_size: int = 256) -> Evaluation:
    """Run ``model`` over the split and compute every metric of the record."""
    from trainlab.metrics import probabilities

    logits, images_per_second = timed_logits(model, x, batch_size)
    report = classification_report(y, probabilities(logits).numpy(), class_names)
    report.metrics["images_per_second"] = images_per_second
    return report


def evaluate_int8(model: nn.Module, x: np.ndarray, y: np.ndarray, class_names: Sequence[str],
                  calibration: np.ndarray, batch_size: int = 256) -> Evaluation:
    """Evaluate an int8 copy of ``model`` (calibrated on ``calibration``), and how far it moved from fp32."""
    from trainlab.metrics import accuracy, probabilities
    from trainlab.quantize import label_agreement, quantize_int8

    fp32_logits, fp32_speed = timed_logits(model, x, batch_size)
    fp32_probs = probabilities(fp32_logits).numpy()  # not the logits: a binary head has one column
    quantized = quantize_int8(model, calibration, batch_size)
    report = replace(evaluate(quantized.model, x, y, class_names, batch_size), precision="int8")
    report.metrics.update({
        "label_agreement_fp32": label_agreement(report.probs, fp32_probs),
        "fp32_accuracy": accuracy(y, fp32_probs.argmax(1)),
        "fp32_images_per_second": fp32_speed,
        "quantize_seconds": quantized.seconds,
    })
    return report


def timed_logits(model: nn.Module, x: np.ndarray, batch_size: int) -> tuple[torch.Tensor, float]:
    """The model's logits for ``x`` and the images per second of that forward pass."""
    from trainlab.metrics import predict_logits

    started = time.perf_counter()
    logits = predict_logits(model, x, batch_size)
    seconds = time.perf_counter() - started
    return logits, len(x) / seconds if seconds > 0 else float("inf")


def thin(curve: dict[str, np.ndarray], max_points: int = CURVE_POINTS) -> dict[str, list[float]]:
    """Keep at most ``max_points`` evenly spaced points of a curve (always both ends), as lists."""
    n = len(next(iter(curve.values())))
    keep = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int))
    return {key: values[keep].tolist() for key, values in curve.items()}


def classification_report(y: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> Evaluation:
    from sklearn.metrics import (
        confusion_matrix,
        log_loss,
        precision_recall_curve,
        precision_recall_fscore_support,
        roc_curve,
    )

    from trainlab.metrics import accuracy, auroc

    labels = list(range(len(class_names)))
    pred = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    macro_p, macro_r, macro_f1, _ = precision_recall_fscore_support(
        y, pred, labels=labels, average="macro", zero_division=0
    )
    metrics = {
        "accuracy": accuracy(y, pred),
        "macro_precision": float(macro_p),
        "macro_recall": float(macro_r),
        "macro_f1": float(macro_f1),
        "auroc": auroc(y, probs),
        "log_loss": float(log_loss(y, probs, labels=labels)),
    }
    per_class = [
        {"class": name, "precision": float(precision[k]), "recall": float(recall[k]),
         "f1": float(f1[k]), "support": int(support[k])}
        for k, name in enumerate(class_names)
    ]
    roc, pr = {}, {}
    for k, name in enumerate(class_names):
        positives = y == k
        if positives.all() or not positives.any():
            continue  # a curve needs both positives and negatives
        fpr, tpr, roc_t = roc_curve(positives, probs[:, k])
        prec, rec, pr_t = precision_recall_curve(positives, probs[:, k])
        roc[name] = thin({"fpr": fpr, "tpr": tpr, "thresholds": np.nan_to_num(roc_t, posinf=1.0)})
        # precision_recall_curve has one point per distinct score (thousands): thresholds
        # has one fewer entry than precision and recall, so it is padded with 1.0
        pr[name] = thin({"precision": prec, "recall": rec, "thresholds": np.append(pr_t, 1.0)})
    return Evaluation(
        class_names=tuple(class_names),
        metrics=metrics,
        per_class=per_class,
        confusion=confusion_matrix(y, pred, labels=labels),
        roc=roc,
        pr=pr,
        y_true=np.asarray(y),
        probs=probs,
    )
