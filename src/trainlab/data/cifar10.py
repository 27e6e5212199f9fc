"""CIFAR-10: the official python batches, read straight from the verified archive."""

from __future__ import annotations

import io
import pickle
import tarfile
from typing import Any

import numpy as np

from trainlab.config import DataConfig
from trainlab.data.dataset import Dataset, register_dataset
from trainlab.data.fetch import DownloadProgress, RemoteFile, Source, VerifiedFile, fetch_source
from trainlab.errors import CorruptDataError

CIFAR10 = Source(
    dataset="cifar10",
    files=(RemoteFile("cifar-10-python.tar.gz",
                      "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),),
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
)
_FOLDER = "cifar-10-batches-py"
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


def read_batches(archive: VerifiedFile) -> tuple[dict[str, dict[bytes, Any]], list[str]]:
    """Unpickle every batch of the archive (its SHA-256 was checked before this runs)."""
    batches: dict[str, dict[bytes, Any]] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:*") as tar:
            for member in (*_TRAIN_BATCHES, "test_batch", "batches.meta"):
                fh = tar.extractfile(f"{_FOLDER}/{member}")
                if fh is None:
                    raise KeyError(member)
                batches[member] = pickle.load(io.BytesIO(fh.read()), encoding="bytes")
    except (tarfile.TarError, KeyError, EOFError, pickle.UnpicklingError, OSError) as exc:
        raise CorruptDataError(
            f"{str(archive.path)!r} is not a complete CIFAR-10 python archive ({type(exc).__name__}: {exc}); "
            "delete it and run `trainlab download --dataset cifar10`"
        ) from None
    names = [n.decode() for n in batches.pop("batches.meta")[b"label_names"]]
    return batches, names


def _stack(batches: list[dict[bytes, Any]]) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in batches])
    return x, y


@register_dataset("cifar10")
def load_cifar10(cfg: DataConfig, progress: DownloadProgress | None = None) -> Dataset:
    files = fetch_source(CIFAR10, cfg.data_dir, download=cfg.download, mirror=cfg.mirror, progress=progress)
    archive = files[CIFAR10.files[0].name]
    batches, class_names = read_batches(archive)
    train_x, train_y = _stack([batches[b] for b in _TRAIN_BATCHES])
    test_x, test_y = _stack([batches["test_batch"]])
    return Dataset(
        name="cifar10",
        class_names=tuple(class_names),
        train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        files={archive.path.name: archive.sha256},
        location=str(archive.path.parent),
    )
