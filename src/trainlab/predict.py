"""Label new images with a saved model: image files or IDX files in, probabilities out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainlab.checkpoint import load_checkpoint, model_from_checkpoint
from trainlab.data import load_images, read_idx_file
from trainlab.data.images import IMAGE_SUFFIXES
from trainlab.errors import ConfigError, DataError
from trainlab.evaluate import timed_logits
from trainlab.metrics import probabilities
from trainlab.runs import locate_checkpoint

MAX_NAMED = 3  # images named in a note; the rest are counted


@dataclass(frozen=True)
class Prediction:
    sources: list[str]  # file name, or file[index] for images inside an IDX file
    probs: np.ndarray  # (N, classes)
    class_names: tuple[str, ...]
    images_per_second: float
    precision: str  # fp32, or int8 (`--int8`)
    quantize_seconds: float | None  # with int8: tracing, calibrating and converting the model
    notes: list[str]  # things the user should know about these predictions (polarity, int8 on this CPU)


def polarity_note(pixels: np.ndarray, sources: Sequence[str], trained_on: str | None, inverted: bool) -> str | None:
    """When images have the opposite background of the training images (dark digit on white paper vs white on black)."""
    from trainlab.data.images import border_brightness

    if trained_on not in ("dark", "light") or len(pixels) == 0:
        return None
    light = border_brightness(pixels) >= 128
    opposite = [src for src, is_light in zip(sources, light) if is_light == (trained_on == "dark")]
    if not opposite:
        return None
    named = ", ".join(opposite[:MAX_NAMED]) + (f" and {len(opposite) - MAX_NAMED:,} more" if len(opposite) > MAX_NAMED else "")
    other = "light" if trained_on == "dark" else "dark"
    fix = "drop --invert" if inverted else "pass --invert"
    return (f"{len(opposite):,} of {len(sources):,} images have a {other} background{' after --invert' if inverted else ''} "
            f"({named}) but the model was trained on {trained_on} backgrounds; its labels for them are likely "
            f"wrong: {fix} to flip them")


def _is_idx(path: Path) -> bool:
    name = path.name.lower()
    return "idx" in name or name.endswith((".ubyte", ".ubyte.gz"))


def expand_folders(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Every input as a file: a folder stands for the image and IDX files under it (recursively, sorted); and the
    other files found in folders, left out."""
    files: list[Path] = []
    other: list[Path] = []
    for path in paths:
        if path.is_dir():
            found: list[Path] = []
            left: list[Path] = []
            for f in sorted(f for f in path.rglob("*") if f.is_file()):
                hidden = any(part.startswith(".") for part in f.relative_to(path).parts)
                (found if not hidden and (f.suffix.lower() in IMAGE_SUFFIXES or _is_idx(f)) else left).append(f)
            other += left
            if not found:
                raise ConfigError(f"folder {str(path)!r} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                                  "or IDX files, also in its subfolders; pass a folder of images")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"input {str(path)!r} does not exist; pass image files, IDX image files or folders of them")
    return files, other


def read_inputs(paths: Sequence[Path], input_shape: Sequence[int],
                resize: str = "squish") -> tuple[list[str], np.ndarray, list[Path]]:
    """Decode every input (the images in folders) into uint8 (N, C, H, W) at the model's input size; and the
    files in folders that were left out."""
    channels, height, width = input_shape
    sources: list[str] = []
    batches: list[np.ndarray] = []
    files, other = expand_folders(paths)
    for path in files:
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
            batches.append(load_images([path], channels, (height, width), resize))
            sources.append(str(path))
    return sources, np.concatenate(batches), other


def predict_files(model_ref: str, paths: Sequence[Path], runs_dir: Path, batch_size: int = 256,
                  tracking_uri: str | None = None, int8: bool = False, data_dir: Path | None = None,
                  invert: bool = False) -> Prediction:
    """Probabilities for every input image; with ``int8``, from an int8 copy calibrated on the model's training images.

    ``invert`` flips the pixels (255 - p) first, for images whose background is the opposite of the training data's.
    """
    payload = load_checkpoint(locate_checkpoint(model_ref, runs_dir, tracking_uri), complete=True)
    model = model_from_checkpoint(payload)
    resize = payload["config"].get("data", {}).get("resize", "squish")  # as the model's training images were fitted
    sources, pixels, other = read_inputs(paths, model.input_shape, resize)
    if invert:
        pixels = 255 - pixels
    notes = [note] if (note := polarity_note(pixels, sources, payload.get("background"), invert)) else []
    if other:
        named = ", ".join(str(p) for p in other[:MAX_NAMED]) + (f" and {len(other) - MAX_NAMED:,} more"
                                                                 if len(other) > MAX_NAMED else "")
        notes.append(f"left out {len(other):,} file(s) in the folders that are not images or are hidden ({named})")
    quantize_seconds = None
    if int8:
        from trainlab.evaluation_run import checkpoint_dataset
        from trainlab.quantize import CALIBRATION_IMAGES, int8_backbone_note, int8_cpu_note, quantize_int8

        notes += [note for note in (int8_cpu_note(), int8_backbone_note(model)) if note]
        try:
            calibration = checkpoint_dataset(payload, data_dir).train_x[:CALIBRATION_IMAGES]
        except DataError as exc:
            raise DataError(f"--int8 calibrates on the model's training images, which are not available: {exc}; "
                            "pass --data-dir where they are, or run without --int8") from None
        quantized = quantize_int8(model, calibration, batch_size)
        model, quantize_seconds = quantized.model, quantized.seconds
    logits, images_per_second = timed_logits(model, pixels, batch_size)
    return Prediction(sources, probabilities(logits).numpy(), tuple(payload["class_names"]), images_per_second,
                      "int8" if int8 else "fp32", quantize_seconds, notes)
