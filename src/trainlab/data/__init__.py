"""Datasets: find / download / verify / load, then split.

``create_dataset(cfg.data)`` returns a :class:`Dataset` of uint8 images held in
memory; ``split_dataset`` holds out the validation share. Loaders register
themselves by name; importing this package registers them all.
"""

from trainlab.data import cifar10, digits, idx, images, npz  # noqa: F401  (registers the loaders)
from trainlab.data.dataset import (
                                   Dataset,
                                   Splits,
                                   create_dataset,
                                   data_fingerprint,
                                   dataset_names,
                                   load_data,
                                   split_dataset,
)
from trainlab.data.fetch import Source, fetch_source
from trainlab.data.idx import read_idx_file
from trainlab.data.images import load_images

__all__ = [
    "Dataset", "Splits", "Source", "create_dataset", "data_fingerprint", "dataset_names", "load_data",
    "fetch_source", "load_images", "read_idx_file", "split_dataset",
]
