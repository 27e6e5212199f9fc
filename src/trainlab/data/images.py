"""Image files: an image folder dataset (one subfolder per class), and images for prediction."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from trainlab.config import DataConfig
from trainlab.data.dataset import Dataset, register_dataset, stratified_indices
from trainlab.data.fetch import DownloadProgress
from trainlab.errors import ConfigError, CorruptDataError, DataError, DataNotFoundError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
DEFAULT_SIZE = (28, 28)


def load_images(paths: Sequence[Path], channels: int, size: tuple[int, int]) -> np.ndarray:
    """Decode, convert (L or RGB) and resize images to uint8 (N, C, H, W)."""
    from PIL import Image, UnidentifiedImageError

    height, width = size
    out = np.empty((len(paths), channels, height, width), dtype=np.uint8)
    mode = "L" if channels == 1 else "RGB"
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = img.convert(mode)
                if img.size != (width, height):
                    img = img.resize((width, height), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise CorruptDataError(f"image {str(path)!r} cannot be read ({exc}); remove or replace it") from None
        out[i] = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return out


def has_colour(paths: Sequence[Path]) -> bool:
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path) as img:
                if img.mode not in ("1", "L", "LA", "I", "I;16", "F"):
                    return True
        except OSError:
            continue  # load_images reports it with the file name
    return False


def _class_files(root: Path) -> dict[str, list[Path]]:
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"class folder {str(folder)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        classes[folder.name] = files
    return classes


def _manifest_sha256(root: Path, files: Sequence[Path]) -> str:
    """One digest over every image's relative path and bytes: the folder's data version."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()


@register_dataset("imagefolder")
def load_imagefolder(cfg: DataConfig, progress: DownloadProgress | None = None) -> Dataset:
    if cfg.path is None:
        raise ConfigError("data.name is 'imagefolder' but data.path is not set; point it at a folder of class subfolders")
    root = Path(cfg.path)
    if not root.is_dir():
        raise DataNotFoundError(f"data.path = {str(root)!r} is not a folder; point it at a folder of class subfolders")
    split_folders = (root / "train").is_dir() and (root / "test").is_dir()
    train = _class_files(root / "train" if split_folders else root)
    if len(train) < 2:
        raise DataError(f"image folder {str(root)!r} has {len(train)} class subfolder(s); a classifier needs at least 2")
    class_names = tuple(train)
    test = _class_files(root / "test") if split_folders else {}
    unknown = set(test) - set(class_names)
    if unknown:
        raise DataError(f"{str(root / 'test')!r} has classes {sorted(unknown)} that train/ does not")

    def flatten(by_class: dict[str, list[Path]]) -> tuple[list[Path], np.ndarray]:
        paths = [p for name in class_names for p in by_class.get(name, [])]
        labels = [i for i, name in enumerate(class_names) for _ in by_class.get(name, [])]
        return paths, np.asarray(labels, dtype=np.int64)

    train_paths, train_y = flatten(train)
    test_paths, test_y = flatten(test)
    all_paths = train_paths + test_paths
    channels = cfg.channels or (3 if has_colour(all_paths) else 1)
    size = tuple(cfg.image_size or DEFAULT_SIZE)
    x = load_images(all_paths, channels, size)  # type: ignore[arg-type]
    train_x, test_x = x[: len(train_paths)], x[len(train_paths):]
    if not split_folders:
        keep, held = stratified_indices(train_y, cfg.test_fraction, cfg.split_seed)
        train_x, test_x, test_y, train_y = train_x[keep], train_x[held], train_y[held], train_y[keep]
    return Dataset(
        name="imagefolder", class_names=class_names,
        train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        files={f"{root.name}/ ({len(all_paths)} images)": _manifest_sha256(root, all_paths)},
        location=str(root),
    )
