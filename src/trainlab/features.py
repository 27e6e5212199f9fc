"""A linear probe's input: the frozen backbone's pooled features of every image, computed once and cached.

The cache file (``data_dir/cache/features/<key>.npz``) is keyed by the backbone's weights (their values), the
image size and the pixels of every split themselves, so a second run on the same data and weights computes
nothing, and any change (another file, another split, other weights) computes afresh. Like the image cache, a file that cannot be
read is recomputed and one that cannot be written is skipped, with the reason kept for the run's warnings.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from trainlab.data import Splits
from trainlab.fileio import atomic_open, remove_stale_parts
from trainlab.models import Classifier


@dataclass
class ProbeFeatures:
    splits: Splits  # the features (float32, N x features) in place of the images
    seconds: float  # computing them, or reading them from the cache
    images_per_second: float  # the backbone's extraction rate (nan when cached)
    cached: bool
    problems: list[str] = field(default_factory=list)


def features_key(model: Classifier, splits: Splits) -> str:
    """The body's weights themselves (random ones differ per seed), its input and the pixels of every split."""
    digest = hashlib.sha256()
    for part in (repr(model.input_shape), repr(model.layers)):
        digest.update(part.encode() + b"\0")
    for name, tensor in model.body.state_dict().items():
        digest.update(name.encode() + b"\0")
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().data)
    for array in (splits.train_x, splits.val_x, splits.test_x):
        digest.update(repr(array.shape).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()[:32]


@torch.inference_mode()
def pooled_features(model: Classifier, images: np.ndarray, batch_size: int, device: torch.device | str) -> np.ndarray:
    """The model's features (its body's output) for uint8 (N, C, H, W) images, in batches."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        pixels = torch.from_numpy(images[start:start + batch_size]).to(device)
        out.append(model.features(pixels).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.head.in_features), np.float32)


def probe_features(model: Classifier, splits: Splits, data_dir: Path, batch_size: int,
                   device: torch.device | str = "cpu", cache: bool = True,
                   starting: Callable[[], None] = lambda: None) -> ProbeFeatures:
    """Features of the train / val / test splits, from the cache or computed (and cached); ``starting`` is
    called before they are computed."""
    path = Path(data_dir) / "cache" / "features" / f"{features_key(model, splits)}.npz"
    problems: list[str] = []
    started = time.perf_counter()
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in ("train", "val", "test")}
            width = model.head.in_features
            if all(arrays[k].shape == (len(getattr(splits, f"{k}_y")), width) for k in arrays):
                return ProbeFeatures(_with(splits, arrays), time.perf_counter() - started, float("nan"), True)
            problems.append(f"{path} holds features of other images or another backbone; they were computed again")
        except Exception as exc:  # noqa: BLE001  cut, emptied or foreign: compute again, and rewrite it
            problems.append(f"{path} could not be read ({type(exc).__name__}); the features were computed again")
    starting()
    started = time.perf_counter()
    if cache:
        remove_stale_parts(path.parent)  # a write killed with -9 left its temp file
    arrays = {k: pooled_features(model, getattr(splits, f"{k}_x"), batch_size, device) for k in ("train", "val", "test")}
    seconds = time.perf_counter() - started
    images = sum(len(a) for a in arrays.values())
    if cache:
        try:
            with atomic_open(path) as fh:
                np.savez(fh, **arrays)
        except OSError as exc:
            problems.append(f"the features were not cached in {path.parent} ({exc.strerror}); the next run computes "
                            "them again")
    return ProbeFeatures(_with(splits, arrays), seconds, images / seconds if seconds else float("nan"), False, problems)


def _with(splits: Splits, arrays: dict[str, np.ndarray]) -> Splits:
    return Splits(arrays["train"], splits.train_y, arrays["val"], splits.val_y, arrays["test"], splits.test_y,
                  splits.class_names)
