"""Transfer learning offline: EfficientNet-Lite0's feature extraction rate, and configs/photos_transfer.yaml (a
linear probe on the packaged ImageNet weights) against configs/photos.yaml (from scratch) on a real few-shot task.

The task: scikit-image's labelled faces (100 LFW faces, 100 non-faces, 25x25 grey) with 10 training photos per
class and the other 180 held out (tests/photos.py builds the folder). Each run is the real command with MLflow
recording; the pair is judged by `trainlab compare` over seeds.

    python bench/transfer.py [--seeds 5]
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

import numpy as np
from common import print_cpu_line, run_main

REPO = Path(__file__).resolve().parents[1]
TRAINLAB = str(Path(sys.executable).with_name("trainlab"))


def extraction_rate(size: int, images: int = 256, batch: int = 64) -> float:
    """Images per second through the frozen backbone at size x size (batches of 64, after one warm-up batch)."""
    import torch

    from trainlab.config import ModelConfig
    from trainlab.features import pooled_features
    from trainlab.models import create_model

    torch.set_num_threads(2)
    model = create_model(ModelConfig(arch="efficientnet_lite0"), (3, size, size), 2, (127.5,) * 3, (127.5,) * 3)
    pixels = np.random.default_rng(0).integers(0, 256, (images, 3, size, size), dtype=np.uint8)
    pooled_features(model, pixels[:batch], batch, "cpu")
    started = time.perf_counter()
    pooled_features(model, pixels, batch, "cpu")
    return images / (time.perf_counter() - started)


def train(config: str, folder: Path, work: Path, seed: int, name: str) -> tuple[float, dict]:
    out = work / "runs"
    before = set(out.iterdir()) if out.is_dir() else set()
    started = time.perf_counter()
    subprocess.run([TRAINLAB, "train", "-c", str(REPO / "configs" / config), f"data.path={folder}", f"seed={seed}",
                    f"name={name}", "-q", "-t", "mlflow", "report=false"], cwd=work, check=True, capture_output=True,
                   env={**os.environ})
    wall = time.perf_counter() - started
    run_dir = next(iter(set(out.iterdir()) - before))
    return wall, json.loads((run_dir / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from photos import write_lfw_folder

    print_cpu_line()
    for size in (160, 224):
        print(f"EfficientNet-Lite0 features at {size}x{size}: {extraction_rate(size):6.1f} images/s (2 threads)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = write_lfw_folder(work / "lfw", train_per_class=10)
        print("\nfaces vs non-faces (skimage lfw_subset), 10 training photos per class (8 train + 2 validation), "
              "180 held out; each the real `trainlab train -c ...` recorded in MLflow")
        for seed in range(args.seeds):
            wall_probe, probe = train("photos_transfer.yaml", folder, work, seed, "lfw-transfer")
            wall_scratch, scratch = train("photos.yaml", folder, work, seed, "lfw-scratch")
            cached = "features cached" if probe.get("features_cached") else \
                f"features {probe.get('features_seconds', float('nan')):.1f} s"
            print(f"  seed {seed}: linear probe {probe['test_accuracy']:.4f} in {wall_probe:4.1f} s wall ({cached}); "
                  f"from scratch {scratch['test_accuracy']:.4f} in {wall_scratch:4.1f} s")
        compare = subprocess.run([TRAINLAB, "compare", "--a", "params.name = 'lfw-scratch'", "--b",
                                  "params.name = 'lfw-transfer'", "--pool"], cwd=work, capture_output=True, text=True,
                                 env={**os.environ, "COLUMNS": "200"})
        lines = [line.strip() for line in compare.stdout.splitlines() if "verdict" in line or "test accuracy  " in line]
        print("trainlab compare --a \"params.name = 'lfw-scratch'\" --b \"params.name = 'lfw-transfer'\" --pool:")
        print("\n".join(f"  {line}" for line in lines) or compare.stdout + compare.stderr)


if __name__ == "__main__":
    run_main("transfer", main)
