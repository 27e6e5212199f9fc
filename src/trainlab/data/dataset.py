"""The in-memory dataset every loader returns, the loader registry, and the splits."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from trainlab.catalog import DATASETS
from trainlab.config import DataConfig
from trainlab.data.fetch import DownloadProgress
from trainlab.errors import DataError


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 (N, C, H, W), labels as int64 class indices, and where they came from."""

    name: str
    class_names: tuple[str, ...]
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    files: dict[str, str] = field(default_factory=dict)  # source file -> SHA-256 (the data version)
    location: str = ""  # where the files were read from
    label_encoding: Literal["index", "onehot"] = "index"  # as the source stores them
    val_x: np.ndarray | None = None  # a validation split the source provides (an image folder's val/)
    val_y: np.ndarray | None = None
    val_source: str = ""  # where val_x came from, for the user ("folder val/")
    train_source: str = ""  # where train_x came from, when the source is not one file set ("folder train/")
    test_source: str = ""  # where test_x came from, when not the source's own test split ("20% of train, stratified")
    skipped: tuple[str, ...] = ()  # source files that could not be read and were left out
    ingestion: str = ""  # how the files became pixels, for the start line ("cache hit: 2,000 images, none decoded")
    notices: tuple[str, ...] = ()  # problems that did not stop loading (a cache that could not be written)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.train_x.shape[1:]
        return channels, height, width

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Splits:
    """Train / validation / test arrays, ready for the training loop."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}

    def class_counts(self) -> dict[str, list[int]]:
        """Images per class (in class_names' order) per split."""
        n = len(self.class_names)
        return {split: np.bincount(y, minlength=n).tolist()
                for split, y in (("train", self.train_y), ("val", self.val_y), ("test", self.test_y))}


RARE_CLASS = 5  # a class with fewer than 1/RARE_CLASS of the largest class's training images is warned about


def rare_classes(class_names: tuple[str, ...], train_counts: list[int]) -> list[str]:
    """Classes with under a fifth of the largest class's training images: the model will rarely predict them."""
    largest = max(train_counts, default=0)
    return [f"{name} ({count:,})" for name, count in zip(class_names, train_counts, strict=True)
            if count * RARE_CLASS < largest]


Loader = Callable[[DataConfig, "DownloadProgress | None"], Dataset]
_LOADERS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """The loader of a dataset trainlab.catalog lists (config validation accepts only those names)."""
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is not listed in trainlab.catalog.DATASETS; add it there first")

    def add(loader: Loader) -> Loader:
        _LOADERS[name] = loader
        return loader

    return add


def dataset_names() -> tuple[str, ...]:
    return tuple(sorted(_LOADERS))


def create_dataset(cfg: DataConfig, progress: DownloadProgress | None = None) -> Dataset:
    """Find (or download), verify and load the dataset ``cfg.name``."""
    dataset = _LOADERS[cfg.name](cfg, progress)  # the config accepts only names that have a loader (a test checks)
    check_dataset(dataset)
    return dataset


def check_dataset(ds: Dataset) -> None:
    """What every loader must guarantee before training starts; a failure names the dataset and the fix."""
    where = f"dataset {ds.name!r} ({ds.location})" if ds.location else f"dataset {ds.name!r}"
    splits = [("train", ds.train_x, ds.train_y), ("test", ds.test_x, ds.test_y)]
    if ds.val_x is not None and ds.val_y is not None:
        splits.append(("validation", ds.val_x, ds.val_y))
    for split, x, y in splits:
        if x.dtype != np.uint8 or x.ndim != 4:
            raise DataError(f"{where}: {split} images are {x.dtype} {x.shape}, expected uint8 (N, C, H, W)")
        if len(x) != len(y):
            raise DataError(f"{where}: {split} has {len(x)} images but {len(y)} labels; every image needs one label")
        if len(y) and (y.min() < 0 or y.max() >= ds.num_classes):
            raise DataError(f"{where}: {split} labels run from {y.min()} to {y.max()}, but there are "
                            f"{ds.num_classes} classes (0 to {ds.num_classes - 1}); fix the labels")
        if 0 in x.shape[1:]:
            raise DataError(f"{where}: {split} images have shape {x.shape[1:]}; every side must be at least 1 pixel")
    if len(ds.train_y) == 0:
        raise DataError(f"{where}: the training split is empty; add training images")
    trained = np.unique(ds.train_y)
    if len(trained) < 2:
        raise DataError(f"{where}: every training image has the same label ({ds.class_names[int(trained[0])]!r}); "
                        "a classifier needs at least 2 classes")
    for split, _, y in splits[1:]:
        unseen = sorted(set(np.unique(y).tolist()) - set(trained.tolist()))
        if unseen:
            names = ", ".join(repr(ds.class_names[i]) for i in unseen[:5])
            raise DataError(f"{where}: the {split} split has classes the training split never shows ({names}); "
                            "the model cannot learn them: add training images of those classes or drop them")


def split_dataset(ds: Dataset, val_fraction: float, seed: int) -> Splits:
    """The source's own validation split when it has one, else a stratified share of the training split."""
    if ds.val_x is not None and ds.val_y is not None and len(ds.val_y):
        return Splits(ds.train_x, ds.train_y, ds.val_x, ds.val_y, ds.test_x, ds.test_y, ds.class_names)
    train_idx, val_idx = stratified_indices(ds.train_y, val_fraction, seed)
    return Splits(
        ds.train_x[train_idx], ds.train_y[train_idx],
        ds.train_x[val_idx], ds.train_y[val_idx],
        ds.test_x, ds.test_y, ds.class_names,
    )


def stratified_indices(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (keep, held-out) indices; stratified by class when every class has two or more samples."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    if len(y) and y.min() < 0:
        raise DataError(f"labels must be class indices 0, 1, ...; found {y.min()}: fix the labels")
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    try:
        keep, held = train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError:
        keep, held = train_test_split(idx, test_size=fraction, random_state=seed)
    if len(keep) == 0 or len(held) == 0:
        raise DataError(f"a split of {len(y)} samples at fraction {fraction} leaves one side empty; use more data")
    return np.sort(keep), np.sort(held)


def to_nchw(x: np.ndarray, what: str) -> np.ndarray:
    """(N,H,W) / (N,H,W,C) / (N,C,H,W) with C in {1,3} -> (N,C,H,W)."""
    if x.ndim == 3:
        return x[:, None, :, :]
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    if x.ndim == 4 and x.shape[3] in (1, 3):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    raise DataError(f"{what} has shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3")


def load_data(cfg: DataConfig, progress: DownloadProgress | None = None,
              dataset: Dataset | None = None) -> tuple[Dataset, Splits]:
    """Load (unless already loaded) and split."""
    dataset = dataset or create_dataset(cfg, progress)
    return dataset, split_dataset(dataset, cfg.val_fraction, cfg.split_seed)


def data_fingerprint(dataset: Dataset) -> str:
    """One digest over the source files' SHA-256s: equal fingerprints, equal data."""
    joined = "\n".join(f"{name} {sha}" for name, sha in sorted(dataset.files.items()))
    return hashlib.sha256(joined.encode()).hexdigest()
