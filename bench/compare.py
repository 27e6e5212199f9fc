"""Does `trainlab compare` cry wolf? False alarms on one config against itself, and power on a real gap.

1. false alarms, seed groups: one config (digits, the quickstart CNN, --epochs epochs) trained with
   --pool different seeds; the pool split into disjoint 3-vs-3 groups, each pair of groups compared
   as config against config (Welch's t-test, as `compare --a/--b` does). Both sides are the same
   config, so every "better"/"worse" verdict at the 5% level is a false alarm: the share must stay
   near 5%. Reported for the disjoint comparisons (>= 20) and, for a tighter figure, for 2,000
   random 3-vs-3 draws from the pool (overlapping, so not independent of each other).
2. single runs, pairwise: disjoint pairs of the pool's models compared with McNemar's test on the
   test split. Two models of one config can truly differ on the population (different mistakes),
   so this share may exceed 5%: it says how often "these two models differ", not "this config is better".
   Also: the seed spread `compare` estimates from one pair's disagreements, against the pool's measured std.
3. power: a clearly better config (`fast` for 2 epochs) against a weaker one (`small` for 1 epoch),
   3 and 4 seeds a side, --power-comparisons times each: the share found better.
4. cost: `trainlab compare A B` end to end on two recorded digits runs (CLI, MLflow store), and the
   paired tests alone on 10,000 examples x 10 classes (the Fashion-MNIST test split's size).

Runs are trained in this process without trackers; the tests are trainlab's own (significance.py),
fed with the same numbers a recorded run holds. Prints the CPU it ran on.

    python bench/compare.py [--pool 120] [--epochs 5] [--power-comparisons 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import print_cpu_line, run_main

REPO = Path(__file__).resolve().parents[1]


def train_pool(overrides: list[str], seeds: range, label: str) -> list:
    from trainlab.config import load_config
    from trainlab.experiment import run_experiment

    outcomes = []
    started = time.perf_counter()
    for i, seed in enumerate(seeds, 1):
        cfg = load_config(REPO / "configs" / "quickstart.yaml", [*overrides, f"seed={seed}", "tracking.trackers=[]"])
        outcomes.append(run_experiment(cfg))
        if sys.stdout.isatty():
            print(f"\r  {label}: {i}/{len(seeds)} runs trained", end="", flush=True)
    print(f"\r  {label}: {len(seeds)} runs trained in {time.perf_counter() - started:.0f} s")
    return outcomes


def false_alarms(accuracies: np.ndarray, alpha: float, draws: int) -> None:
    from trainlab.experiments.seed_groups import group_difference

    disjoint = [(accuracies[i:i + 3], accuracies[i + 3:i + 6]) for i in range(0, len(accuracies) - 5, 6)]
    called = [group_difference("test_accuracy", a, b).outcome(alpha) != "indistinguishable" for a, b in disjoint]
    print(f"1. seed groups, one config against itself (3 vs 3 seeds, Welch's t-test, {alpha:g} level):")
    print(f"   {sum(called)} of {len(called)} disjoint comparisons called better/worse "
          f"({np.mean(called):.1%}; expected about {alpha:.0%})")
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(draws):
        picked = rng.choice(len(accuracies), 6, replace=False)
        hits += group_difference("test_accuracy", accuracies[picked[:3]], accuracies[picked[3:]]).outcome(alpha) \
            != "indistinguishable"
    print(f"   {hits} of {draws} random 3-vs-3 draws from the pool: {hits / draws:.1%}")


def pairwise_models(outcomes: list, alpha: float) -> None:
    from trainlab.experiments.seed_groups import seed_spread_from_disagreement
    from trainlab.experiments.significance import mcnemar

    correct = [o.test.y_pred == o.test.y_true for o in outcomes]
    pairs = [(correct[i], correct[i + 1]) for i in range(0, len(correct) - 1, 2)]
    different = [mcnemar(a, b)[2] < alpha for a, b in pairs]
    n = len(correct[0])
    estimates = [seed_spread_from_disagreement(int(np.sum(a != b)), n) for a, b in pairs]
    measured = np.std([c.mean() for c in correct], ddof=1)
    print(f"2. single runs of that config, pairwise (McNemar, {alpha:g} level, {n} test images):")
    print(f"   {sum(different)} of {len(pairs)} disjoint pairs of models called different ({np.mean(different):.1%})")
    print(f"   seed spread of test accuracy: measured over {len(correct)} seeds {measured * 100:.2f} points; "
          f"estimated from one pair's disagreements: median {np.median(estimates) * 100:.2f} points "
          f"(range {min(estimates) * 100:.2f} to {max(estimates) * 100:.2f})")


def power(comparisons: int, alpha: float) -> None:
    from trainlab.experiments.seed_groups import group_difference

    seeds = range(1000, 1000 + 4 * comparisons)
    strong = train_pool(["model.arch=fast", "train.epochs=2"], seeds, "fast, 2 epochs")
    weak = train_pool(["model.arch=small", "train.epochs=1"], seeds, "small, 1 epoch")
    print("3. a clearly better config (fast, 2 epochs) against small, 1 epoch, paired by seed:")
    for k in (3, 4):
        found = []
        for i in range(comparisons):
            group = slice(k * i, k * i + k)
            a = [o.test.metrics["accuracy"] for o in weak[group]]
            b = [o.test.metrics["accuracy"] for o in strong[group]]
            seeds_used = [str(s) for s in seeds[group]]
            found.append(group_difference("test_accuracy", a, b, seeds_used, seeds_used))
        better = sum(d.outcome(alpha) == "better" for d in found)
        print(f"   {k} seeds a side: found better in {better} of {comparisons} comparisons; mean gap "
              f"{np.mean([d.difference for d in found]) * 100:.1f} points, largest p {max(d.p_value for d in found):.2g}")


def cost() -> None:
    from trainlab.experiments.significance import paired_differences

    exe = str(Path(sys.executable).with_name("trainlab"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "WANDB_MODE": "disabled"}
        for seed in (0, 1):
            subprocess.run([exe, "train", "-c", str(REPO / "configs" / "quickstart.yaml"), f"seed={seed}",
                            "train.epochs=2", "-t", "mlflow", "-q"], cwd=tmp, env=env, check=True, capture_output=True)
        ids = sorted(p.name for p in (Path(tmp) / "runs").iterdir())
        started = time.perf_counter()
        subprocess.run([exe, "compare", *ids], cwd=tmp, env=env, check=True, capture_output=True)
        print(f"4. `trainlab compare A B` on two recorded digits runs (360 test images), end to end: "
              f"{time.perf_counter() - started:.1f} s")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 10_000)
    logits = rng.normal(size=(10_000, 10))
    logits[np.arange(10_000), y] += 3
    pa = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    logits += rng.normal(scale=0.5, size=logits.shape)
    pb = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    started = time.perf_counter()
    paired_differences(y, pa.round(6), pb.round(6))
    print(f"   paired tests alone on 10,000 examples x 10 classes (McNemar + 2,000 bootstrap resamples of "
          f"accuracy, macro F1, AUROC, log loss): {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=120, help="seeds of the one config (6 per disjoint comparison)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--power-comparisons", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    print_cpu_line()
    os.chdir(tempfile.mkdtemp(prefix="trainlab-bench-compare-"))
    pool = train_pool([f"train.epochs={args.epochs}"], range(args.pool), f"quickstart, {args.epochs} epochs")
    accuracies = np.array([o.test.metrics["accuracy"] for o in pool])
    print(f"   test accuracy over {len(pool)} seeds: mean {accuracies.mean():.4f}, std {accuracies.std(ddof=1):.4f}")
    false_alarms(accuracies, args.alpha, args.draws)
    pairwise_models(pool, args.alpha)
    power(args.power_comparisons, args.alpha)
    cost()


if __name__ == "__main__":
    run_main("compare", main)
    sys.exit(0)
