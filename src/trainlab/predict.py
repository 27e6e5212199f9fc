"""Label new images with a saved model: image files or IDX files in, probabilities out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from trainlab.checkpoint import load_checkpoint, model_from_checkpoint
from trainlab.data import load_images, read_idx_file
from trainlab.errors import ConfigError, DataError
from trainlab.evaluate import timed_logits
from trainlab.metrics import probabilities
from trainlab.runs import locate_checkpoint


@dataclass(frozen=True)
class Prediction:
    sources: list[str]  # file name, or file[index] for images inside an IDX file
    probs: np.ndarray  # (N, classes)
    class_names: tuple[str, ...]
    images_per_second: float
    precision: str  # fp32, or int8 (`--int8`)
    quantize_seconds: float | None  # with int8: tracing, calibrating and converting the model


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
                  tracking_uri: str | None = None, int8: bool = False, data_dir: Path | None = None) -> Prediction:
    """Probabilities for every input image; with ``int8``, from an int8 copy calibrated on the model's training images."""
    payload = load_checkpoint(locate_checkpoint(model_ref, runs_dir, tracking_uri))
    model = model_from_checkpoint(payload)
    sources, pixels = read_inputs(paths, model.input_shape)
    quantize_seconds = None
    if int8:
        from trainlab.experiment import checkpoint_dataset
        from trainlab.quantize import CALIBRATION_IMAGES, quantize_int8

        try:
            calibration = checkpoint_dataset(payload, data_dir).train_x[:CALIBRATION_IMAGES]
        except DataError as exc:
            raise DataError(f"--int8 calibrates on the model's training images, which are not available: {exc}; "
                            "pass --data-dir where they are, or run without --int8") from None
        quantized = quantize_int8(model, calibration, batch_size)
        model, quantize_seconds = quantized.model, quantized.seconds
    logits, images_per_second = timed_logits(model, pixels, batch_size)
    return Prediction(sources, probabilities(logits).numpy(), tuple(payload["class_names"]), images_per_second,
                      "int8" if int8 else "fp32", quantize_seconds)
