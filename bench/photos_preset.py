"""configs/photos.yaml on a texture task made of real photographs: accuracy and wall time as a user runs it, and
what its augmentation is worth on a small training set (a paired `trainlab compare` over seeds).

The task: 3 classes, random crops of scikit-image's brick / grass / gravel photographs, written as JPEG and PNG
files of 96-224 px, grey or RGB (tests/photos.py builds it; held-out crops come from another part of each photo).
Each run is the real command, `trainlab train -c configs/photos.yaml data.path=...`, with MLflow and W&B
(offline) recording and the report page, on a fresh decode cache for the first seed.

    python bench/photos_preset.py [--seeds 3] [--compare-seeds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import print_cpu_line, run_main

REPO = Path(__file__).resolve().parents[1]
TRAINLAB = str(Path(sys.executable).with_name("trainlab"))
NO_AUGMENTATION = ["data.augment.flip=false", "data.augment.translate=0", "data.augment.color_jitter=0"]


def train(folder: Path, work: Path, seed: int, *overrides: str, trackers: tuple[str, ...] = ()) -> tuple[float, dict]:
    """Wall seconds of the command, and the run's summary.json."""
    out = work / "runs"
    before = set(out.iterdir()) if out.is_dir() else set()
    started = time.perf_counter()
    subprocess.run([TRAINLAB, "train", "-c", str(REPO / "configs" / "photos.yaml"), f"data.path={folder}",
                    f"seed={seed}", "-q", *overrides, *[a for t in trackers for a in ("-t", t)]],
                   cwd=work, check=True, capture_output=True, env={**os.environ, "WANDB_MODE": "offline"})
    wall = time.perf_counter() - started
    run_dir = next(iter(set(out.iterdir()) - before))
    return wall, json.loads((run_dir / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the full-size task")
    parser.add_argument("--compare-seeds", type=int, default=10, help="seeds of the with/without-augmentation pair")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from photos import write_texture_folder

    print_cpu_line()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        full = write_texture_folder(work / "textures", train_per_class=40, test_per_class=30, seed=0)
        print("task: brick / grass / gravel crops, 40 training photos per class (36 train + 4 validation), "
              "30 held-out test photos per class")
        for seed in range(args.seeds):
            wall, summary = train(full, work, seed, trackers=("mlflow", "wandb"))
            print(f"  seed {seed}: test accuracy {summary['test_accuracy']:.4f}, {wall:5.1f} s wall "
                  f"(MLflow + W&B offline + report page{', fresh decode cache' if seed == 0 else ''})")

        small = write_texture_folder(work / "small", train_per_class=20, test_per_class=30, seed=2)
        print(f"\naugmentation on a small training set (20 photos per class), seeds 0..{args.compare_seeds - 1}, "
              "recorded in MLflow:")
        for seed in range(args.compare_seeds):
            _, on = train(small, work, seed, "name=photos-augmented", trackers=("mlflow",))
            _, off = train(small, work, seed, "name=photos-plain", *NO_AUGMENTATION, trackers=("mlflow",))
            print(f"  seed {seed}: with {on['test_accuracy']:.4f}, without {off['test_accuracy']:.4f}")
        compare = subprocess.run([TRAINLAB, "compare", "--a", "params.name = 'photos-plain'", "--b",
                                  "params.name = 'photos-augmented'"], cwd=work, capture_output=True, text=True,
                                 env={**os.environ, "COLUMNS": "200"})
        verdict = [line for line in compare.stdout.splitlines() if "verdict" in line or "test accuracy  " in line]
        print("trainlab compare --a \"params.name = 'photos-plain'\" --b \"params.name = 'photos-augmented'\":")
        print("\n".join(f"  {line.strip()}" for line in verdict) or compare.stdout + compare.stderr)


if __name__ == "__main__":
    run_main("photos_preset", main)
