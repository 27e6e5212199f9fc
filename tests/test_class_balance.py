"""Imbalanced classes: the warning, and the two remedies (class-weighted loss, balanced sampler) measured on real
digits, by the rare class's recall on a balanced test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from trainlab.experiment import run_experiment
from trainlab.train import balanced_class_weights, epoch_order

RARE = 3  # the digit left with a handful of training images


def imbalanced_digits(path: Path, rare_images: int = 6) -> Path:
    """scikit-learn's digits (scaled to 0..255) as an .npz: every class whole in the test split, and class RARE
    cut to ``rare_images`` in the training split."""
    digits = load_digits()
    x = (digits.images * 255 / 16).astype(np.uint8)
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), bool)
    for label in range(10):
        test[rng.choice(np.flatnonzero(y == label), 40, replace=False)] = True
    train = ~test & ((y != RARE) | (np.cumsum(y == RARE) <= rare_images))
    np.savez(path, x=x[train], y=y[train], x_test=x[test], y_test=y[test])
    return path


def rare_recall(cfg_overrides: list[str], data: Path) -> float:
    from conftest import build_fast_config

    cfg = build_fast_config("data.name=npz", f"data.path={data}", "train.epochs=3", "model.arch=small",
                            "train.optimizer.lr=0.003", *cfg_overrides)
    outcome = run_experiment(cfg)
    return float(outcome.test.per_class[RARE]["recall"])


def test_balanced_weights_and_draws_follow_the_class_counts() -> None:
    y = torch.tensor([0] * 90 + [1] * 10)
    assert balanced_class_weights(y, 3).tolist() == pytest.approx([100 / 270, 100 / 30, 0.0])
    torch.manual_seed(0)
    drawn = epoch_order(y, "balanced", 2)
    assert len(drawn) == 100 and 35 <= int((y[drawn] == 1).sum()) <= 65  # about half, not a tenth
    torch.manual_seed(0)
    assert sorted(epoch_order(y, "shuffle", 2).tolist()) == list(range(100))


@pytest.mark.slow
def test_class_weights_and_a_balanced_sampler_raise_the_rare_class_recall(tmp_path: Path) -> None:
    data = imbalanced_digits(tmp_path / "imbalanced.npz")
    plain = rare_recall([], data)
    weighted = rare_recall(["train.class_weights=balanced"], data)
    sampled = rare_recall(["data.sampler=balanced"], data)
    assert plain < 0.5, plain  # 6 images of 1,000: the model hardly ever says 3
    assert weighted >= plain + 0.25 and sampled >= plain + 0.25, (plain, weighted, sampled)


def test_a_rare_class_is_warned_about_with_its_count_and_the_remedies(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trainlab.cli import app

    data = imbalanced_digits(tmp_path / "imbalanced.npz")
    result = CliRunner().invoke(app, ["train", "data.name=npz", f"data.path={data}", "train.epochs=1", "threads=1",
                                      "--tracker", "none", "report=false"])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if "fifth" in line]
    assert warning == ["warning: 1 class has under a fifth of the largest class's training images: 3 (5); the model "
                       "will rarely predict it: add images, or set train.class_weights: balanced or data.sampler: "
                       "balanced"], result.stderr
    assert "images per class (train/val/test): 0 " in result.stdout
