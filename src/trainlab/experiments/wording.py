"""How a comparison says what it found, the same for a pair, a ranking, their pages and the command line:
metric names and labels, differences in points, intervals, p-values, and the notes pairs and rankings share
(too few seeds; compared on the saved predictions instead).
"""

from __future__ import annotations

import math

from trainlab.experiments.significance import METRICS, MIN_SEEDS, lower_is_better

LABELS = {"accuracy": "test accuracy", "macro_f1": "macro F1", "auroc": "AUROC", "log_loss": "log loss"}


def label(metric: str) -> str:
    return LABELS.get(metric.removeprefix("test_"), metric)


def amount(metric: str, value: float, signed: bool = True, unit: bool = True) -> str:
    """A difference in the metric's own words: points for shares (0.008 -> +0.80 points), else the value."""
    if math.isnan(value):
        return "n/a"
    sign = "+" if signed else ""
    if lower_is_better(metric):
        return f"{value:{sign}.4f}"
    return f"{value * 100:{sign}.2f}" + (" points" if unit else "")


def interval(metric: str, low: float, high: float) -> str:
    """'-0.40 to +1.20 points'."""
    return f"{amount(metric, low, unit=False)} to {amount(metric, high)}"


def p_text(p: float) -> str:
    return "n/a" if math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def metric_name(metric: str) -> str:
    """'accuracy', 'test_accuracy' -> 'test_accuracy'; any other recorded metric as given."""
    bare = metric.removeprefix("test_")
    return f"test_{bare}" if bare in METRICS else metric


def few_seeds_note(who: str) -> str:
    """The one warning every seed-group comparison gives when a side has fewer than MIN_SEEDS runs."""
    return (f"Too few seeds to tell configs apart: {who} fewer than {MIN_SEEDS} runs, so the seed-to-seed spread is "
            "barely measured and a t-test over seeds is not meaningful; add seeds before trusting a verdict about "
            "the configs.")


def predictions_note(examples: int, which: str = "the models") -> str:
    """What a seed-group comparison on saved predictions says, and what it does not."""
    return (f"So {which} are compared on their saved predictions instead, every model of a side on the same "
            f"{examples} test examples (accuracy: a paired t-test over the examples; the other metrics: a paired "
            "bootstrap). This tells whether these models differ on this test split, not whether one config is "
            "better than the other (more seeds of either could change the answer).")
