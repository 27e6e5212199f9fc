"""scikit-learn's bundled 8x8 digits: the offline default."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainlab.config import DataConfig
from trainlab.data.dataset import Dataset, register_dataset, stratified_indices
from trainlab.data.fetch import DownloadProgress, sha256_file


@register_dataset("digits")
def load_digits_dataset(cfg: DataConfig, progress: DownloadProgress | None = None) -> Dataset:
    import sklearn.datasets

    bunch = sklearn.datasets.load_digits()
    # pixel values are 0..16; scale to the 0..255 of every other dataset
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    train_idx, test_idx = stratified_indices(y, cfg.test_fraction, cfg.split_seed)
    source = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
    return Dataset(
        name="digits",
        class_names=tuple(str(c) for c in bunch.target_names),
        train_x=x[train_idx], train_y=y[train_idx],
        test_x=x[test_idx], test_y=y[test_idx], test_source=f"{cfg.test_fraction:.0%} held out, stratified",
        files={source.name: sha256_file(source)},
        location=str(source.parent),
    )
