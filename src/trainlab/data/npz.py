"""Arrays a team already has: a .npz with x and y (and optionally x_test, y_test, class_names)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

import numpy as np

from trainlab.config import DataConfig
from trainlab.data.dataset import Dataset, register_dataset, stratified_indices, to_nchw
from trainlab.data.fetch import DownloadProgress, sha256_file
from trainlab.errors import ConfigError, CorruptDataError, DataError, DataNotFoundError


def _as_uint8(x: np.ndarray, what: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating) and x.size and 0.0 <= x.min() and x.max() <= 1.0:
        return np.rint(x * 255.0).astype(np.uint8)
    raise DataError(f"{what} is {x.dtype} with values {x.min()}..{x.max()}; store uint8 0..255 or floats 0..1")


def _labels(y: np.ndarray, what: str) -> tuple[np.ndarray, Literal["index", "onehot"]]:
    """Class indices and the encoding found: (N,) integers, or (N, K) one-hot rows."""
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        if len(y) and y.min() < 0:
            raise DataError(f"{what} holds the label {y.min()}; labels are class indices 0, 1, ...: fix the labels")
        return y.astype(np.int64), "index"
    if y.ndim == 2 and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all():
        return y.argmax(axis=1).astype(np.int64), "onehot"
    raise DataError(f"{what} has shape {y.shape} and dtype {y.dtype}; expected (N,) class indices or (N, K) one-hot rows")


def _same_length(x: np.ndarray, y: np.ndarray, what: str, labels: str) -> None:
    if len(x) != len(y):
        raise DataError(f"{what} has {len(x)} images but {labels} has {len(y)} labels; every image needs exactly "
                        "one label: fix the arrays")


@register_dataset("npz")
def load_npz(cfg: DataConfig, progress: DownloadProgress | None = None) -> Dataset:
    if cfg.path is None:
        raise ConfigError("data.name is 'npz' but data.path is not set; point it at a .npz file with arrays x and y")
    path = Path(cfg.path)
    if not path.is_file():
        raise DataNotFoundError(f"data.path = {str(path)!r} does not exist; point it at a .npz file with arrays x and y")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CorruptDataError(f"{str(path)!r} is not a readable .npz file ({exc})") from None
    missing = {"x", "y"} - arrays.keys()
    if missing:
        raise DataError(f"{str(path)!r} has arrays {sorted(arrays)}, missing {sorted(missing)}")
    x = _as_uint8(to_nchw(arrays["x"], f"{path}: x"), f"{path}: x")
    y, encoding = _labels(arrays["y"], f"{path}: y")
    _same_length(x, y, f"{path}: x", "y")
    if "x_test" in arrays and "y_test" in arrays:
        test_x = _as_uint8(to_nchw(arrays["x_test"], f"{path}: x_test"), f"{path}: x_test")
        test_y, _ = _labels(arrays["y_test"], f"{path}: y_test")
        _same_length(test_x, test_y, f"{path}: x_test", "y_test")
        train_x, train_y, test_source = x, y, "x_test, y_test"
    else:
        train_idx, test_idx = stratified_indices(y, cfg.test_fraction, cfg.split_seed)
        train_x, train_y, test_x, test_y = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
        test_source = f"{cfg.test_fraction:.0%} of x, stratified: no x_test"
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    if arrays["y"].ndim == 2:
        num_classes = arrays["y"].shape[1]
    names = tuple(str(n) for n in arrays["class_names"]) if "class_names" in arrays else tuple(
        str(i) for i in range(num_classes)
    )
    return Dataset(
        name="npz", class_names=names,
        train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        files={path.name: sha256_file(path)}, location=str(path.parent), label_encoding=encoding,
        test_source=test_source,
    )
