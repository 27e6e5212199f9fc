"""Label new images with a saved model: image files or IDX files in, probabilities out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from trainlab.checkpoint import load_checkpoint, model_from_checkpoint
from trainlab.data import load_images, read_idx_file
from trainlab.errors import ConfigError, DataError
from trainlab.metrics import predict_logits, probabilities
from trainlab.runs import locate_checkpoint


@dataclass(frozen=True)
class Prediction:
    sources: list[str]  # file name, or file[index] for images inside an IDX file
    probs: np.ndarray  # (N, classes)
    class_names: tuple[str, ...]
    images_per_second: float


def _is_idx(path: Path) -> bool:
    name = path.name.lower()
    return "idx" in name or name.endswith((".ubyte", ".ubyte.gz"))


def read_inputs(paths: Sequence[Path], input_shape: Sequence[int]) -> tuple[list[str], np.ndarray]:
    """Decode every input into uint8 (N, C, H, W) at the model's input size."""
    channels, height, width = input_shape
    sources: list[str] = []
    batches: list[np.ndarray] = []
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"input {str(path)!r} does not exist; pass image files or IDX image files")
        if _is_idx(path):
            arr = read_idx_file(path)
            if arr.ndim == 3:
                arr = arr[:, None]
            if arr.ndim != 4 or tuple(arr.shape[1:]) != (channels, height, width):
                raise DataError(
                    f"IDX file {str(path)!r} holds images of shape {tuple(arr.shape[1:])}, "
                    f"but the model takes {tuple(input_shape)}"
                )
            batches.append(arr.astype(np.uint8))
            sources += [f"{path.name}[{i}]" for i in range(len(arr))]
        else:
            batches.append(load_images([path], channels, (height, width)))
            sources.append(str(path))
    return sources, np.concatenate(batches)


def predict_files(model_ref: str, paths: Sequence[Path], runs_dir: Path, batch_size: int = 256,
                  tracking_uri: str | None = None) -> Prediction:
    payload = load_checkpoint(locate_checkpoint(model_ref, runs_dir, tracking_uri))
    model = model_from_checkpoint(payload)
    sources, pixels = read_inputs(paths, model.input_shape)
    started = time.perf_counter()
    probs = probabilities(predict_logits(model, pixels, batch_size)).numpy()
    seconds = time.perf_counter() - started
    return Prediction(sources, probs, tuple(payload["class_names"]), len(pixels) / max(seconds, 1e-9))
