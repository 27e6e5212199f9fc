"""Seed groups compared: several runs a side, their recorded test metrics (see significance.py for the whole
picture). Welch's t-test, or a paired t-test when both sides ran the same seeds, with an exact permutation test
beside it and the probability that B's config is the better one; and how many seeds a difference needs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainlab.experiments.significance import CLIPPED, MIN_SEEDS, GroupDifference, lower_is_better, within_range


def group_difference(metric: str, a: Sequence[float], b: Sequence[float], seeds_a: Sequence[str] = (),
                     seeds_b: Sequence[str] = ()) -> GroupDifference:
    """B's runs against A's: the difference of means, its 95% CI and p (paired by seed when both sides ran the
    same seeds; one run on a side borrows the other side's spread), the exact permutation p, P(B better)."""
    import warnings

    from scipy import stats

    with warnings.catch_warnings():  # nearly equal runs: SciPy warns of precision loss, and says so in its result
        warnings.simplefilter("ignore", RuntimeWarning)
        return _group_difference(metric, a, b, seeds_a, seeds_b, stats)


def _group_difference(metric: str, a: Sequence[float], b: Sequence[float], seeds_a: Sequence[str],
                      seeds_b: Sequence[str], stats: Any) -> GroupDifference:
    va, vb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    paired = (len(va) >= 2 and len(seeds_a) == len(va) and len(seeds_b) == len(vb)
              and len(set(seeds_a)) == len(va) and set(seeds_a) == set(seeds_b))
    if paired:
        by_seed = dict(zip(seeds_a, va))
        va = np.array([by_seed[s] for s in seeds_b])
    diff = float(vb.mean() - va.mean())
    std_a, std_b = (float(np.std(v, ddof=1)) if len(v) > 1 else math.nan for v in (va, vb))
    p_perm = math.nan
    if paired:
        res = stats.ttest_rel(vb, va)
        t_stat, df, ci = float(res.statistic), float(res.df), res.confidence_interval(0.95)
        p, test = float(res.pvalue), f"paired t-test, {len(va)} seeds"
        p_perm = float(stats.permutation_test((vb, va), lambda x, y, axis: np.mean(x - y, axis=axis),
                                              permutation_type="samples", vectorized=True).pvalue)
    elif len(va) >= 2 and len(vb) >= 2:
        res = stats.ttest_ind(vb, va, equal_var=False)
        t_stat, df, ci = float(res.statistic), float(res.df), res.confidence_interval(0.95)
        p, test = float(res.pvalue), f"Welch's t-test, {len(va)} vs {len(vb)} runs"
        p_perm = float(stats.permutation_test((vb, va), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                                              permutation_type="independent", vectorized=True).pvalue)
    else:  # one run on a side: the other side's seed spread stands for both
        spread = std_a if len(va) > 1 else std_b
        df = float(max(len(va), len(vb)) - 1)
        se = spread * math.sqrt(1 / len(va) + 1 / len(vb))
        t_stat = diff / se if se > 0 else math.copysign(math.inf, diff) if diff else math.nan
        half = float(stats.t.ppf(0.975, df)) * se
        ci = _Interval(diff - half, diff + half)
        p = float(2 * stats.t.sf(abs(t_stat), df)) if not math.isnan(t_stat) else math.nan
        test = f"t-test, one run against {max(len(va), len(vb))} (the group's spread for both)"
    if math.isnan(p):  # no spread at all on either side: equal groups are indistinguishable
        p = 1.0 if diff == 0 else p_perm
    prob = float(stats.t.cdf(t_stat, df)) if not math.isnan(t_stat) else 0.5
    if lower_is_better(metric):
        prob = 1 - prob
    low, high, clipped = within_range(metric, float(ci.low), float(ci.high))
    if min(len(va), len(vb)) < MIN_SEEDS:
        test += f" (fewer than {MIN_SEEDS} seeds a side: the interval is not meaningful)"
    if clipped:
        test += f"; {CLIPPED}"
    return GroupDifference(metric, float(va.mean()), float(vb.mean()), diff, low, high, p, test,
                           n_a=len(va), n_b=len(vb), std_a=std_a, std_b=std_b, paired=paired, p_permutation=p_perm,
                           prob_b_better=prob)


@dataclass(frozen=True)
class _Interval:
    low: float
    high: float


def seed_spread_from_disagreement(disagreeing: int, examples: int) -> float:
    """A lower bound on the seed-to-seed std of a config's test accuracy, from how often two of its models
    disagree: if examples varied independently across seeds, each example's correctness would vary with
    variance p(1-p) and two seeds would disagree on it with probability 2p(1-p), so Var(accuracy) = disagreement
    rate / (2 x examples). Real seeds also move many examples together (a better or worse model overall), so the
    true spread is larger (bench/compare.py measures by how much)."""
    return math.sqrt(disagreeing / examples / (2 * examples)) if examples else math.nan


def seeds_needed(difference: float, seed_std: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Runs a side for a two-sided test at ``alpha`` to detect ``difference`` with ``power`` (None: no difference
    to detect, or no spread known)."""
    from scipy.stats import norm

    if not difference or not seed_std or math.isnan(seed_std) or math.isnan(difference):
        return None
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return max(2, math.ceil(2 * (z * seed_std / abs(difference)) ** 2))
