"""Which tricks of the Fashion-MNIST recipes carry their weight on this CPU: each one turned off (or changed) in
turn, the same seeds, each run the real `trainlab train -c configs/<preset>.yaml`, recorded in MLflow (a temporary
store), and the pair judged by `trainlab compare --a ... --b ...` over the seeds (paired by seed).

A trick earns its place if turning it off loses accuracy (compare's verdict) or time; the table prints both: test
accuracy (mean ± sd over seeds), training seconds (median), and compare's verdict of the preset against the variant.

    python bench/recipe.py [--preset fashion_fast] [--seeds 3] [--epochs N] [--only flip tta] [--save]

`--epochs` shortens every run alike (fashion_accurate's 20 epochs are 5 minutes a run: its ablation runs 6).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import print_cpu_line, run_main

REPO = Path(__file__).resolve().parents[1]
TRAINLAB = str(Path(sys.executable).with_name("trainlab"))

# name -> (what it changes, the overrides that undo or change that trick of the preset)
VARIANTS: dict[str, dict[str, tuple[str, list[str]]]] = {
    "fashion_fast": {
        "fp32": ("bf16 autocast off (train.precision=fp32)", ["train.precision=fp32"]),
        "label-smoothing": ("+ label smoothing 0.1", ["train.loss.label_smoothing=0.1"]),
        "flip": ("+ flip augmentation", ["data.augment.flip=true"]),
        "tta": ("+ flip test-time augmentation", ["model.tta=flip"]),
        "batch-256": ("batch 256, lr 0.008 (scaled)", ["train.batch_size=256", "train.optimizer.lr=0.008"]),
        "batch-64": ("batch 64, lr 0.002 (scaled)", ["train.batch_size=64", "train.optimizer.lr=0.002"]),
        "nchw": ("channels_last off", ["model.channels_last=false"]),
    },
    "fashion_accurate": {
        "fp32": ("bf16 autocast off (train.precision=fp32)", ["train.precision=fp32"]),
        "no-flip": ("flip augmentation and flip TTA off", ["data.augment.flip=false", "model.tta=none"]),
        "no-flip-keep-tta": ("flip augmentation off, flip TTA kept", ["data.augment.flip=false"]),
        "no-translate": ("translate augmentation off", ["data.augment.translate=0"]),
        "no-tta": ("flip test-time augmentation off", ["model.tta=none"]),
        "no-label-smoothing": ("label smoothing 0.1 -> 0", ["train.loss.label_smoothing=0"]),
    },
}


def train(work: Path, preset: str, name: str, seed: int, overrides: list[str]) -> dict:
    """One recorded run; its summary.json (test accuracy, training seconds)."""
    out = work / "runs"
    before = set(out.iterdir()) if out.is_dir() else set()
    subprocess.run([TRAINLAB, "train", "-c", str(REPO / "configs" / f"{preset}.yaml"), f"seed={seed}",
                    f"name={name}", "-q", "-t", "mlflow", "report=false", f"output_dir={out}", *overrides],
                   cwd=work, check=True, capture_output=True, env={**os.environ})
    (run_dir,) = set(out.iterdir()) - before
    return json.loads((run_dir / "summary.json").read_text())


def verdict(work: Path, a: str, b: str) -> str:
    """compare's verdict line for A (the preset) against B (the variant), without its 'verdict:' label."""
    done = subprocess.run([TRAINLAB, "compare", "--a", f"params.name = '{a}'", "--b", f"params.name = '{b}'",
                           "--pool"], cwd=work, capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"})
    line = next((x for x in done.stdout.splitlines() if "verdict" in x), done.stdout + done.stderr)
    return re.sub(r"^\W*verdict:?\s*", "", line.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(VARIANTS), default="fashion_fast")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="train.epochs for every run (default: the preset's)")
    parser.add_argument("--only", nargs="+", choices=sorted({v for p in VARIANTS.values() for v in p}))
    args = parser.parse_args()
    print_cpu_line()
    variants = {k: v for k, v in VARIANTS[args.preset].items() if not args.only or k in args.only}
    epochs = [f"train.epochs={args.epochs}"] if args.epochs else []
    print(f"configs/{args.preset}.yaml{' with ' + epochs[0] if epochs else ''} against one change at a time, seeds "
          f"0..{args.seeds - 1}, 2 threads, each a recorded `trainlab train`; A = the preset, B = the variant")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = {"preset": ("the preset as shipped", [train(work, args.preset, "preset", s, epochs)
                                                     for s in range(args.seeds)])}
        for name, (what, overrides) in variants.items():
            rows[name] = (what, [train(work, args.preset, name, s, [*epochs, *overrides]) for s in range(args.seeds)])
        print(f"{'variant':<38} {'test accuracy':>17} {'train s':>8}  trainlab compare (A = preset, B = variant)")
        for name, (what, runs) in rows.items():
            accuracies = [r["test_accuracy"] for r in runs]
            spread = f"{statistics.mean(accuracies):.4f} ± {statistics.stdev(accuracies):.4f}" if len(runs) > 1 else \
                f"{accuracies[0]:.4f}"
            seconds = statistics.median(r["train_seconds"] for r in runs)
            said = "" if name == "preset" else verdict(work, "preset", name)
            print(f"{what:<38} {spread:>17} {seconds:>8.1f}  {said}")


if __name__ == "__main__":
    # one results file per preset: recipe-fashion_fast.txt, recipe-fashion_accurate.txt
    run_main("recipe-" + (sys.argv[sys.argv.index("--preset") + 1] if "--preset" in sys.argv else "fashion_fast"), main)
