"""Training speed of configs/cifar10_fast.yaml on CIFAR-shaped data (3x32x32, 10 classes), with and without its
augmentation: training images/s and seconds per epoch, measured by the training loop itself.

The real CIFAR-10 files cannot be downloaded where this was written, so the images are random uint8 pixels of
CIFAR's shape: speed does not depend on what the pixels show. Figures, not assertions.

    python bench/cifar10_speed.py [--images 10000] [--epochs 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
from common import print_cpu_line, run_main

PRESET = Path(__file__).resolve().parents[1] / "configs" / "cifar10_fast.yaml"


def epoch_figures(data: Path, epochs: int, threads: int, *overrides: str) -> tuple[float, float]:
    """Median training images/s and epoch seconds over the epochs after the first (warm-up)."""
    from trainlab.config import load_config
    from trainlab.experiment import run_experiment

    cfg = load_config(PRESET, ["data.name=npz", f"data.path={data}", f"train.epochs={epochs}", f"threads={threads}",
                               "tracking.trackers=[]", "report=false", f"output_dir={data.parent / 'runs'}",
                               *overrides])
    history = run_experiment(cfg).result.history[1:] or run_experiment(cfg).result.history
    return (statistics.median(h["images_per_second"] for h in history),
            statistics.median(h["epoch_seconds"] for h in history))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="training images (CIFAR-10 has 50,000)")
    parser.add_argument("--epochs", type=int, default=3, help="the first is a warm-up, not counted")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print_cpu_line()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cifar_shaped.npz"
        np.savez(data, x=rng.integers(0, 256, (args.images, 3, 32, 32), dtype=np.uint8),
                 y=rng.integers(0, 10, args.images), x_test=rng.integers(0, 256, (1000, 3, 32, 32), dtype=np.uint8),
                 y_test=rng.integers(0, 10, 1000))
        print(f"configs/cifar10_fast.yaml on {args.images:,} CIFAR-shaped images (val 4% held out), "
              f"{args.threads} threads, median of epochs 2..{args.epochs}")
        plain_ips, plain_s = epoch_figures(data, args.epochs, args.threads, "data.augment.flip=false",
                                           "data.augment.translate=0")
        aug_ips, aug_s = epoch_figures(data, args.epochs, args.threads)
    print(f"without augmentation:           {plain_ips:7,.0f} training images/s, {plain_s:6.2f} s per epoch")
    print(f"with flip + translate 2 px:     {aug_ips:7,.0f} training images/s, {aug_s:6.2f} s per epoch "
          f"(augmentation costs {100 * (aug_s / plain_s - 1):+.1f}% of epoch time)")
    per_epoch = 48_000 / aug_ips
    print(f"so an epoch of CIFAR-10's 48,000 training images takes about {per_epoch:.0f} s here; "
          f"the preset's 10 epochs about {10 * per_epoch / 60:.0f} min")


if __name__ == "__main__":
    run_main("cifar10_speed", main)
