"""The statistics of a comparison: is a difference between two runs, or two groups of runs, real?

    one model against another, on the same test split (the saved predictions):
        accuracy            McNemar's exact test on the examples exactly one model gets right
        macro F1, AUROC,    a paired bootstrap over the test examples: the split resampled with
        log loss            replacement, both models scored on the same resample
    seed groups (several runs a side, their recorded test metrics; seed_groups.py):
        Welch's t-test (a paired t-test when both sides ran the same seeds), an exact
        permutation test beside it, and the probability that B's config is the better one;
        with fewer than MIN_SEEDS runs a side a t-interval over seeds is not meaningful (1 degree
        of freedom: 12.7 standard errors either way), so the groups' saved predictions are compared
        instead (``paired_differences`` with several models a side)
    intervals of shares (accuracy, F1, AUROC) are kept within what a share can move: [-1, +1]
    many candidates against the best: Holm's correction over their p-values

Distributions and resampling come from SciPy (``binomtest``, ``bootstrap``, ``ttest_ind``,
``ttest_rel``, ``permutation_test``). What is written here is the metrics under bootstrap
weights (a resample is the split with example i counted w_i times), vectorised over
thousands of resamples at once; tests hold them equal to scikit-learn's with ``sample_weight``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METRICS = ("accuracy", "macro_f1", "auroc", "log_loss")
LOWER_IS_BETTER = frozenset({"log_loss", "loss"})
SHARES = ("accuracy", "f1", "auroc", "precision", "recall")  # metrics in [0, 1], by how their names end
ALPHA = 0.05  # the significance level a verdict is given at, unless --alpha says otherwise
RESAMPLES = 2000
BATCH = 100  # resamples scored at once: (BATCH, examples) weights in memory
MIN_SEEDS = 3  # runs a side for a t-test over seeds to mean anything (2 runs: 1 degree of freedom)


def lower_is_better(metric: str) -> bool:
    return metric.removeprefix("test_").removeprefix("val_") in LOWER_IS_BETTER or metric.endswith("_loss")


def is_share(metric: str) -> bool:
    """A metric in [0, 1] (accuracy, F1, AUROC, precision, recall): a difference of two lies in [-1, +1]."""
    return not lower_is_better(metric) and metric.endswith(SHARES)


def within_range(metric: str, low: float, high: float) -> tuple[float, float, bool]:
    """A difference's interval cut to what the metric can move (shares: -1 to +1), and whether it was cut."""
    if not is_share(metric):
        return low, high, False
    cut_low, cut_high = max(low, -1.0), min(high, 1.0)
    return cut_low, cut_high, (cut_low, cut_high) != (low, high)


CLIPPED = "CI clipped to ±100 points"


@dataclass(frozen=True)
class Difference:
    """B - A on one metric, its 95% confidence interval, and the test's p-value."""

    metric: str
    a: float
    b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # which test gave the p-value, with its counts
    only_a: int | None = None  # McNemar: the test examples only A gets right
    only_b: int | None = None

    def outcome(self, alpha: float) -> str:
        """'better' / 'worse' (for B) / 'indistinguishable', by the sign that is good for this metric."""
        if not self.p_value < alpha or self.difference == 0:
            return "indistinguishable"
        gain = -self.difference if lower_is_better(self.metric) else self.difference
        return "better" if gain > 0 else "worse"


@dataclass(frozen=True)
class GroupDifference(Difference):
    """A seed-group comparison: the groups' spread, and what the permutation test and the t posterior say."""

    n_a: int = 0
    n_b: int = 0
    std_a: float = math.nan
    std_b: float = math.nan
    paired: bool = False  # both sides ran the same seeds: compared seed by seed
    p_permutation: float = math.nan  # exact; its smallest possible value depends on the number of seeds
    prob_b_better: float = math.nan  # P(B's config is better | the runs), flat prior, t-distributed means

    @property
    def too_few(self) -> bool:
        """Fewer than MIN_SEEDS runs on a side: the t-interval over seeds is not meaningful."""
        return min(self.n_a, self.n_b) < MIN_SEEDS


# -- one model against another, example by example --------------------------------------------------


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int, float]:
    """(only A right, only B right, exact two-sided p): the examples both get right or wrong say nothing."""
    from scipy.stats import binomtest

    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    p = binomtest(only_b, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return only_a, only_b, float(p)


class WeightedScores:
    """One model's predictions on a split, scored under many bootstrap weightings at once."""

    def __init__(self, y_true: np.ndarray, probs: np.ndarray) -> None:
        n, k = probs.shape
        pred = probs.argmax(axis=1)
        truth = np.eye(k)[y_true]
        predicted = np.eye(k)[pred]
        self.correct = (pred == y_true).astype(np.float64)
        self.hits, self.predicted, self.truth = truth * predicted, predicted, truth
        eps = np.finfo(np.float64).eps
        self.losses = -np.log(np.clip(probs[np.arange(n), y_true], eps, 1 - eps))
        # AUROC, one class against the rest: for each positive, where its score falls among the negatives'
        # sorted scores (ties: between lo and hi), found once; a weighting then needs only cumulative sums
        self.has_auroc = all(truth[:, c].any() and not truth[:, c].all() for c in range(k))
        self.curves = []
        for c in [1] if k == 2 else range(k):
            positives, negatives = np.flatnonzero(y_true == c), np.flatnonzero(y_true != c)
            negatives = negatives[np.argsort(probs[negatives, c], kind="stable")]
            sorted_scores, scores = probs[negatives, c], probs[positives, c]
            self.curves.append((positives, negatives, np.searchsorted(sorted_scores, scores, "left"),
                                np.searchsorted(sorted_scores, scores, "right")))

    def under(self, w: np.ndarray, metrics: Sequence[str] = METRICS) -> np.ndarray:
        """(metrics, resamples): each metric with example i counted ``w[:, i]`` times."""
        return np.stack([getattr(self, metric)(w) for metric in metrics])

    def accuracy(self, w: np.ndarray) -> np.ndarray:
        return w @ self.correct / w.sum(axis=1)

    def macro_f1(self, w: np.ndarray) -> np.ndarray:
        tp, predicted, actual = w @ self.hits, w @ self.predicted, w @ self.truth
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(predicted + actual > 0, 2 * tp / (predicted + actual), 0.0).mean(axis=1)

    def log_loss(self, w: np.ndarray) -> np.ndarray:
        return w @ self.losses / w.sum(axis=1)

    def auroc(self, w: np.ndarray) -> np.ndarray:
        if not self.has_auroc:
            return np.full(len(w), np.nan)
        return np.mean([self._auroc(w, *curve) for curve in self.curves], axis=0)

    @staticmethod
    def _auroc(w: np.ndarray, positives: np.ndarray, negatives: np.ndarray, lo: np.ndarray,
               hi: np.ndarray) -> np.ndarray:
        """Mann-Whitney form: the weighted share of (positive, negative) pairs ranked right, ties counting half."""
        below = np.zeros((len(w), len(negatives) + 1))
        np.cumsum(w[:, negatives], axis=1, out=below[:, 1:])
        wp = w[:, positives]
        with np.errstate(invalid="ignore", divide="ignore"):
            return (wp * (below[:, lo] + 0.5 * (below[:, hi] - below[:, lo]))).sum(axis=1) / (
                wp.sum(axis=1) * below[:, -1])


def paired_differences(y_true: np.ndarray, probs_a: np.ndarray | Sequence[np.ndarray],
                       probs_b: np.ndarray | Sequence[np.ndarray], *, resamples: int = RESAMPLES, seed: int = 0,
                       metrics: Sequence[str] = METRICS) -> dict[str, Difference]:
    """B - A on ``metrics``, from the same test examples.

    One model a side: McNemar for accuracy, a paired bootstrap (percentile intervals, ``resamples``
    resamples) for the intervals and the rest. Several models a side (probabilities per model): each side's
    metric averaged over its models; accuracy by a paired t-test over the test examples (per example, the
    share of A's models right against B's), the rest by the paired bootstrap.
    """
    from scipy.stats import bootstrap

    n = len(y_true)
    a = [WeightedScores(y_true, p) for p in models(probs_a)]
    b = [WeightedScores(y_true, p) for p in models(probs_b)]
    single = len(a) == len(b) == 1
    ones = np.ones((1, n))
    point_a, point_b = mean_under(a, ones, metrics)[:, 0], mean_under(b, ones, metrics)[:, 0]
    resampled = [m for m in metrics if single or m != "accuracy"]

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        """SciPy hands over resampled example indices, (resamples, n); the metrics want counts per example."""
        rows = np.atleast_2d(idx)
        flat = (np.arange(len(rows))[:, None] * n + rows).ravel()
        w = np.bincount(flat, minlength=len(rows) * n).reshape(len(rows), n).astype(np.float64)
        diff = mean_under(b, w, resampled) - mean_under(a, w, resampled)
        return diff[:, 0] if idx.ndim == 1 else diff

    if resampled:
        result = bootstrap((np.arange(n),), statistic, vectorized=True, n_resamples=resamples, batch=BATCH,
                           method="percentile", confidence_level=0.95, rng=np.random.default_rng(seed))
        spread = result.bootstrap_distribution
        lows, highs = np.atleast_1d(result.confidence_interval.low), np.atleast_1d(result.confidence_interval.high)
    only_a = only_b = None
    if single:
        only_a, only_b, p_mcnemar = mcnemar(a[0].correct.astype(bool), b[0].correct.astype(bool))
    found = {}
    for i, metric in enumerate(metrics):
        if np.isnan(point_a[i]) or np.isnan(point_b[i]):
            continue  # AUROC is undefined when the split lacks a class
        diff = float(point_b[i] - point_a[i])
        if metric in resampled:
            k = resampled.index(metric)
            low, high = float(lows[k]), float(highs[k])
        if metric == "accuracy" and single:
            p, test = p_mcnemar, f"McNemar exact: {only_a} only A right, {only_b} only B right"
        elif metric == "accuracy":
            p, low, high = examples_t_test(np.mean([m.correct for m in a], axis=0),
                                           np.mean([m.correct for m in b], axis=0))
            test = f"paired t-test over {n} examples, {len(a)} vs {len(b)} models"
            low, high, clipped = within_range(metric, low, high)
            test += f"; {CLIPPED}" if clipped else ""
        else:
            p = bootstrap_p(spread[resampled.index(metric)])
            test = f"paired bootstrap, {resamples} resamples" + ("" if single else f", {len(a)} vs {len(b)} models")
        if diff == 0 and low == high == 0:
            p = 1.0  # the models agree on every example
        found[metric] = Difference(metric, float(point_a[i]), float(point_b[i]), diff, low, high, p, test,
                                   only_a, only_b)
    return found


def models(probs: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """One model's probabilities (examples, classes), or several models' as a list."""
    return [probs] if isinstance(probs, np.ndarray) and probs.ndim == 2 else list(probs)


def mean_under(side: Sequence[WeightedScores], w: np.ndarray, metrics: Sequence[str]) -> np.ndarray:
    """(metrics, resamples): each metric under the weights, averaged over a side's models."""
    return np.mean([scores.under(w, metrics) for scores in side], axis=0)


def examples_t_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(p, CI low, CI high) of mean(b - a) over the test examples: SciPy's paired t-test."""
    import warnings

    from scipy.stats import ttest_rel

    d = b - a
    if np.ptp(d) == 0:  # no spread: every example moved by the same amount (0: the sides agree everywhere)
        return (1.0 if d[0] == 0 else 0.0), float(d[0]), float(d[0])
    with warnings.catch_warnings():  # nearly constant differences: SciPy warns of precision loss
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ttest_rel(b, a)
        ci = res.confidence_interval(0.95)
    return float(res.pvalue), float(ci.low), float(ci.high)


def bootstrap_p(distribution: np.ndarray) -> float:
    """Two-sided p from a bootstrap distribution of B - A: twice the share on the far side of zero."""
    d = distribution[~np.isnan(distribution)]
    if len(d) == 0:
        return math.nan
    tail = min(np.sum(d <= 0), np.sum(d >= 0))
    return float(min(1.0, 2 * (tail + 1) / (len(d) + 1)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the family-wise error stays at alpha over all the comparisons."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    steps = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted.tolist()
