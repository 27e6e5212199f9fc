"""Inference in large batches, and the classification metrics (all from scikit-learn).

Used every epoch on the validation split (train.py) and once on the test split
(evaluate.py). No metric maths is written here, only calls.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities from the head: softmax, or sigmoid for a one-output binary head."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0].double())
        return torch.stack([1.0 - p, p], dim=1)
    return torch.softmax(logits.double(), dim=1)


def predict_logits(model: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Forward pass only, no autograd, in large batches."""
    pixels = torch.as_tensor(x)
    first = next(model.parameters(), None)  # an int8 model keeps its weights in packed buffers instead
    device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            parts = [model(pixels[i:i + batch_size].to(device)).cpu() for i in range(0, len(pixels), batch_size)]
    finally:
        model.train(was_training)
    if not parts:
        return torch.empty(0, getattr(model, "num_outputs", 1))
    return torch.cat(parts)


def loss_of(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy of the labels (binary cross-entropy for a one-output head)."""
    if logits.shape[1] == 1:
        return float(F.binary_cross_entropy_with_logits(logits[:, 0], y.float()))
    return float(F.cross_entropy(logits, y))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, labels=range(num_classes), average="macro", zero_division=0))


def auroc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest AUROC; NaN when a class is missing from ``y_true`` (it is undefined then)."""
    from sklearn.metrics import roc_auc_score

    num_classes = probs.shape[1]
    if len(np.unique(y_true)) < num_classes:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if num_classes == 2:
            return float(roc_auc_score(y_true, probs[:, 1]))
        return float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=range(num_classes)))


def epoch_metrics(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int, prefix: str) -> dict[str, float]:
    """Loss, accuracy, macro F1 and AUROC of ``model`` on one split."""
    logits = predict_logits(model, x, batch_size)
    probs = probabilities(logits).numpy()
    pred = probs.argmax(axis=1)
    return {
        f"{prefix}_loss": loss_of(logits, torch.as_tensor(y)),
        f"{prefix}_accuracy": accuracy(y, pred),
        f"{prefix}_macro_f1": macro_f1(y, pred, probs.shape[1]),
        f"{prefix}_auroc": auroc(y, probs),
    }
