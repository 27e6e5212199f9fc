"""Transfer learning offline: EfficientNet-Lite0's feature extraction rate, and configs/photos_transfer.yaml (a
linear probe on the packaged ImageNet weights) against configs/photos.yaml (from scratch) on a real few-shot task.

The task: scikit-image's labelled faces (100 LFW faces, 100 non-faces, 25x25 grey) with 10 training photos per
class and the other 180 held out (tests/photos.py builds the folder). Each run is the real command with MLflow
recording; the pair is judged by `trainlab compare` over seeds. Also: the probe's accuracy at 128 / 160 / 224 px,
the CNNs trainlab had before (small, medium) from scratch, int8 against fp32 inference per backbone, and a first
against a second (cached) linear-probe run on a few hundred larger photos.

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
from typing import Any

import numpy as np
from common import print_cpu_line, run_main

REPO = Path(__file__).resolve().parents[1]
TRAINLAB = str(Path(sys.executable).with_name("trainlab"))


def backbone_model(arch: str, size: int) -> Any:
    from trainlab.config import ModelConfig
    from trainlab.models import create_model

    return create_model(ModelConfig(arch=arch), (3, size, size), 2, (127.5,) * 3, (127.5,) * 3).eval()


def extraction_rate(size: int, images: int = 256, batch: int = 64) -> float:
    """Images per second through the frozen backbone at size x size (batches of 64, after one warm-up batch)."""
    import torch

    from trainlab.features import pooled_features

    torch.set_num_threads(2)
    model = backbone_model("efficientnet_lite0", size)
    pixels = np.random.default_rng(0).integers(0, 256, (images, 3, size, size), dtype=np.uint8)
    pooled_features(model, pixels[:batch], batch, "cpu")
    started = time.perf_counter()
    pooled_features(model, pixels, batch, "cpu")
    return images / (time.perf_counter() - started)


def int8_rates(arch: str, size: int = 160, images: int = 128, batch: int = 64) -> tuple[float, float]:
    """Whole-model images per second, fp32 and int8 (`predict --int8`'s quantization), after a warm-up batch."""
    from trainlab.metrics import predict_logits
    from trainlab.quantize import quantize_int8

    model = backbone_model(arch, size)
    pixels = np.random.default_rng(0).integers(0, 256, (images, 3, size, size), dtype=np.uint8)
    rates = []
    for net in (model, quantize_int8(model, pixels[:batch], batch).model):
        predict_logits(net, pixels[:batch], batch)
        started = time.perf_counter()
        predict_logits(net, pixels, batch)
        rates.append(images / (time.perf_counter() - started))
    return rates[0], rates[1]


def train(config: str, folder: Path, work: Path, seed: int, name: str, *overrides: str,
          trackers: tuple[str, ...] = ("mlflow",)) -> tuple[float, dict]:
    out = work / "runs"
    before = set(out.iterdir()) if out.is_dir() else set()
    started = time.perf_counter()
    tracking = [x for t in trackers for x in ("-t", t)]
    subprocess.run([TRAINLAB, "train", "-c", str(REPO / "configs" / config), f"data.path={folder}", f"seed={seed}",
                    f"name={name}", "-q", *tracking, "report=false", *overrides], cwd=work, check=True,
                   capture_output=True, env={**os.environ})
    wall = time.perf_counter() - started
    run_dir = next(iter(set(out.iterdir()) - before))
    return wall, json.loads((run_dir / "summary.json").read_text())


def spread(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def sizes_section(folder: Path, work: Path, seeds: int) -> None:
    print(f"\nthe linear probe at three image sizes (LFW's 25x25 photos scaled up), seeds 0..{seeds - 1}:")
    for size in (128, 160, 224):
        results = [train("photos_transfer.yaml", folder, work, seed, f"lfw-probe-{size}", f"data.image_size={size}")
                   for seed in range(seeds)]
        print(f"  {size} px: test accuracy {spread([r['test_accuracy'] for _, r in results])}, "
              f"{np.median([w for w, _ in results]):.1f} s wall (median)")


def scratch_section(folder: Path, work: Path, seeds: int) -> None:
    print("\nthe CNNs trainlab had before (default training config, 28x28 grey, 10 epochs, no augmentation):")
    for arch in ("small", "medium"):
        accuracies = [train("quickstart.yaml", folder, work, seed, f"lfw-{arch}", "data.name=imagefolder",
                            f"model.arch={arch}", "train.epochs=10")[1]["test_accuracy"] for seed in range(seeds)]
        print(f"  {arch}: test accuracy {spread(accuracies)}")


def second_run_section(work: Path, per_class: int) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from photos import write_texture_folder

    folder = write_texture_folder(work / f"textures-{per_class}", train_per_class=per_class,
                                  test_per_class=per_class // 2)
    count = sum(1 for p in folder.rglob("*") if p.is_file())
    print(f"\na first and a second linear-probe run on {count:,} photos of 96-224 px (skimage's brick / grass / gravel,"
          " JPEG and PNG) at 224 px, untracked (-t none) and recorded (MLflow + W&B offline):")
    for trackers in (("none",), ("mlflow", "wandb")):
        data = work / f"data-{per_class}-{trackers[0]}"
        runs = [train("photos_transfer.yaml", folder, work, 0, "textures", "data.image_size=224",
                      f"data.data_dir={data}", trackers=trackers) for _ in range(2)]
        (first_wall, first), (second_wall, second) = runs
        print(f"  {'+'.join(trackers)}: first run {first_wall:.1f} s wall (features {first['features_seconds']:.1f} s "
              f"at {first['features_images_per_second']:.0f} images/s), second run {second_wall:.1f} s "
              f"(features read from the cache in {second['features_seconds']:.3f} s): {first_wall / second_wall:.1f}x "
              f"the whole run, {first['features_seconds'] / second['features_seconds']:,.0f}x the feature stage")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from photos import write_lfw_folder

    print_cpu_line()
    for size in (128, 160, 224):
        print(f"EfficientNet-Lite0 features at {size}x{size}: {extraction_rate(size):6.1f} images/s (2 threads)")
    for arch in ("efficientnet_lite0", "resnet18"):
        fp32, int8 = int8_rates(arch)
        print(f"{arch} whole model at 160x160: fp32 {fp32:6.1f} images/s, int8 {int8:6.1f} images/s "
              f"({int8 / fp32:.2f}x)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = write_lfw_folder(work / "lfw", train_per_class=10)
        print("\nfaces vs non-faces (skimage lfw_subset), 10 training photos per class (8 train + 2 validation), "
              "180 held out; each the real `trainlab train -c ...` recorded in MLflow; the probe at the preset's size")
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
        sizes_section(folder, work, args.seeds)
        scratch_section(folder, work, args.seeds)
        for per_class in (100, 350):
            second_run_section(work, per_class)


if __name__ == "__main__":
    run_main("transfer", main)
