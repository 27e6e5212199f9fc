"""Training and inference speed of a CNN (default `small`) on Fashion-MNIST (60k train / 10k test).

Prints the input pipeline's images/s alone (batch slicing and normalisation of
the in-memory uint8 tensors), then after each epoch: seconds per epoch,
training images/s, inference images/s on the 10k test images (fp32, and the
int8 copy `--int8` runs, with its label agreement with fp32), and test accuracy.
Figures, not assertions.

    python bench/train_speed.py --epochs 3 [--model small] [--threads 2] [--batch-size 128] [--data-dir data]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import run_main

from trainlab.config import load_config
from trainlab.data import create_dataset, split_dataset
from trainlab.evaluate import evaluate_int8
from trainlab.experiment import build_model
from trainlab.models import count_parameters
from trainlab.quantize import CALIBRATION_IMAGES
from trainlab.train import TrainCallbacks, train


def pipeline_images_per_second(model: torch.nn.Module, train_x, batch: int) -> float:
    """What feeding the model costs: the same slicing and normalisation as the training loop."""
    x = torch.from_numpy(train_x)
    order = torch.randperm(len(x))
    started = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            pixels = x[order[i:i + batch]].float() * model.scale - model.shift
            pixels.contiguous(memory_format=torch.channels_last)
    return len(x) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--model", default="small")
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args()

    cfg = load_config(None, [
        "data.name=fashion-mnist", f"data.data_dir={args.data_dir}", "data.val_fraction=0.1",
        f"model.arch={args.model}", f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}",
        f"threads={args.threads}", "train.optimizer.lr=0.003", "train.schedule.name=cosine",
    ])
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    dataset = create_dataset(cfg.data)
    splits = split_dataset(dataset, cfg.data.val_fraction, cfg.data.split_seed)
    load_seconds = time.perf_counter() - started
    model = build_model(cfg, dataset, splits)

    print(f"# {time.strftime('%Y-%m-%d')} · {platform.processor() or platform.machine()} · torch {torch.__version__} "
          f"· {args.threads} threads · python {sys.version.split()[0]}")
    print(f"# fashion-mnist: {len(splits.train_y):,} train / {len(splits.val_y):,} val / {len(splits.test_y):,} test, "
          f"loaded and verified in {load_seconds:.1f} s")
    print(f"# model {args.model}: {count_parameters(model):,} parameters, batch {args.batch_size}")
    print(f"# input pipeline alone: {pipeline_images_per_second(model, splits.train_x, args.batch_size):,.0f} "
          "images/s (index a shuffled batch of uint8 images, convert, normalise, lay out NHWC)")
    print(f"{'epoch':>5} {'s/epoch':>8} {'train img/s':>12} {'infer img/s':>12} {'int8 img/s':>11} "
          f"{'int8 agrees':>12} {'test acc':>9}")

    class Report(TrainCallbacks):
        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            m = evaluate_int8(model, splits.test_x, splits.test_y, dataset.class_names,
                              dataset.train_x[:CALIBRATION_IMAGES], batch_size=256).metrics
            print(f"{epoch:>5} {metrics['epoch_seconds']:>8.1f} {metrics['images_per_second']:>12,.0f} "
                  f"{m['fp32_images_per_second']:>12,.0f} {m['images_per_second']:>11,.0f} "
                  f"{m['label_agreement_fp32']:>12.2%} {m['fp32_accuracy']:>9.4f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        train(model, splits, cfg.train, seed=cfg.seed, checkpoint_dir=Path(tmp), checkpoint_meta={},
              callbacks=Report())


if __name__ == "__main__":
    run_main("train_speed", main)
