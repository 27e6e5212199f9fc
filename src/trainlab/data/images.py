"""Image files: an image folder dataset (one subfolder per class), and images for prediction."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trainlab.config import DataConfig
from trainlab.data.dataset import Dataset, register_dataset, stratified_indices
from trainlab.data.decode import decode_image
from trainlab.data.fetch import DownloadProgress
from trainlab.data.ingest import ingest
from trainlab.errors import ConfigError, CorruptDataError, DataError, DataNotFoundError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
DEFAULT_SIZE = (28, 28)
VAL_FOLDERS = ("val", "valid", "validation")  # the names people give a validation split


def load_images(paths: Sequence[Path], channels: int, size: tuple[int, int], resize: str = "squish") -> np.ndarray:
    """Decode images to uint8 (N, C, H, W) by the dataset rules (trainlab.data.decode); an unreadable file is an error."""
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(paths), channels, *size), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            content = Path(path).read_bytes()
        except OSError as exc:
            raise CorruptDataError(f"image {str(path)!r} cannot be read ({exc.strerror}); check the path") from None
        out[i] = decode_image(content, str(path), mode, size, resize)
    return out


def _border(x: np.ndarray) -> np.ndarray:
    """Each image's outermost pixels, one row per image."""
    frame = np.concatenate([x[:, :, 0, :], x[:, :, -1, :], x[:, :, :, 0], x[:, :, :, -1]], axis=2)
    return frame.reshape(len(x), -1)


def border_brightness(x: np.ndarray) -> np.ndarray:
    """Mean of each image's outermost pixels (0..255): the background, for digits and garments on a plain ground."""
    return np.asarray(_border(x).mean(axis=1))


def background(x: np.ndarray) -> str | None:
    """"dark" or "light" when at least 90% of the images lie on a plain ground (most of the border within 16 levels
    of black or white, as digits and garments do) and agree; None for photos and mixed backgrounds."""
    if len(x) == 0:
        return None
    border = _border(x)
    plain = ((border <= 16) | (border >= 239)).mean(axis=1) >= 0.6
    if plain.mean() < 0.9:
        return None
    light = float((border.mean(axis=1) >= 128).mean())
    return "light" if light >= 0.9 else "dark" if light <= 0.1 else None


def _hidden(name: str) -> bool:
    """Folders and files tools leave beside photos (.ipynb_checkpoints, .DS_Store, macOS's ._ and __MACOSX)."""
    return name.startswith(".") or name == "__MACOSX"


def _class_files(root: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """Image files per class subfolder, and the files that are not images (skipped, and said)."""
    classes, other = {}, []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p.name)):
        files = sorted(p for p in folder.rglob("*")
                       if p.is_file() and not any(_hidden(part) for part in p.relative_to(folder).parts))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        other += [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if not images:
            raise DataError(f"class folder {str(folder)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                            "add images or remove the folder")
        classes[folder.name] = images
    return classes, other


def _manifest_sha256(root: Path, files: Sequence[Path], sha256: dict[Path, str]) -> str:
    """One digest over every image's relative path and content SHA-256: the folder's data version."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(root).as_posix().encode() + b"\0")
        digest.update(bytes.fromhex(sha256[f]))
    return digest.hexdigest()


@register_dataset("imagefolder")
def load_imagefolder(cfg: DataConfig, progress: DownloadProgress | None = None) -> Dataset:
    """One subfolder per class; or train/ (+ val/ | valid/ | validation/) (+ test/) of them."""
    if cfg.path is None:
        raise ConfigError("data.name is 'imagefolder' but data.path is not set; point it at a folder of class subfolders")
    root = Path(cfg.path)
    if not root.is_dir():
        raise DataNotFoundError(f"data.path = {str(root)!r} is not a folder; point it at a folder of class subfolders")
    split_folders = (root / "train").is_dir()
    train, other = _class_files(root / "train" if split_folders else root)
    if len(train) < 2:
        raise DataError(f"image folder {str(root)!r} has {len(train)} class subfolder(s); a classifier needs at least 2")
    class_names = tuple(train)
    splits: dict[str, dict[str, list[Path]]] = {"train": train}
    val_folder = next((name for name in VAL_FOLDERS if split_folders and (root / name).is_dir()), None)
    for split, name in (("test", "test" if split_folders else None), ("val", val_folder)):
        if name and (root / name).is_dir():
            found, junk = _class_files(root / name)
            other += junk
            unknown = set(found) - set(class_names)
            if unknown:
                raise DataError(f"{str(root / name)!r} has classes {sorted(unknown)} that train/ does not; "
                                "rename or remove them")
            splits[split] = found

    def flatten(by_class: dict[str, list[Path]]) -> tuple[list[Path], list[int]]:
        paths = [p for name in class_names for p in by_class.get(name, [])]
        labels = [i for i, name in enumerate(class_names) for _ in by_class.get(name, [])]
        return paths, labels

    all_paths = [p for split in splits.values() for p in flatten(split)[0]]
    if other and cfg.strict:
        raise DataError(f"{other[0].relative_to(root).as_posix()!r} is not an image "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))}); remove it, or "
                        "set data.strict: false to skip such files")
    size: tuple[int, int] = (cfg.image_size[0], cfg.image_size[1]) if cfg.image_size else DEFAULT_SIZE
    images = ingest(root, all_paths, cfg, size, progress)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    skipped = list(other) + [p for p in all_paths if p not in images.pixels]
    for split, by_class in splits.items():
        paths, labels = flatten(by_class)
        kept = [(p, y) for p, y in zip(paths, labels, strict=True) if p in images.pixels]
        x = np.stack([images.pixels[p] for p, _ in kept]) if kept else np.zeros((0, images.channels, *size), np.uint8)
        arrays[split] = x, np.asarray([y for _, y in kept], dtype=np.int64)
    train_x, train_y = arrays["train"]
    empty = [name for k, name in enumerate(class_names) if not (train_y == k).any()]
    if empty:
        raise DataError(f"class folder{'s' if len(empty) > 1 else ''} {', '.join(map(repr, empty[:5]))} of "
                        f"{str(root)!r} {'have' if len(empty) > 1 else 'has'} no readable training image (the files "
                        "there were skipped); add images or remove the folder")
    train_source = "folder train/" if split_folders else "the class folders"
    if "test" in arrays:
        test_x, test_y = arrays["test"]
        test_source = "folder test/"
    else:
        keep, held = stratified_indices(train_y, cfg.test_fraction, cfg.split_seed)
        train_x, test_x, test_y, train_y = train_x[keep], train_x[held], train_y[held], train_y[keep]
        test_source = (f"{cfg.test_fraction:.0%} of {train_source}: {len(held):,} of {len(keep) + len(held):,} "
                       "images, stratified: no test/ folder")
        train_source = f"the rest of {train_source}"

    val_x, val_y = arrays.get("val", (None, None))
    read = [p for p in all_paths if p in images.pixels]
    return Dataset(
        name="imagefolder", class_names=class_names,
        train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        files={f"{root.name}/ ({len(read)} images)": _manifest_sha256(root, read, images.sha256)},
        location=str(root),
        val_x=val_x, val_y=val_y, val_source=f"folder {val_folder}/" if val_x is not None else "",
        train_source=train_source, test_source=test_source,
        skipped=tuple(p.relative_to(root).as_posix() for p in skipped),
        ingestion=images.summary, notices=tuple(images.problems),
    )
