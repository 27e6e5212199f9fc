"""Decoded images kept on disk, so the next run on the same folder decodes none.

Two files per image folder under ``data_dir/cache/images/<folder key>/``:

- ``files.json``: per file (its path in the folder) its size, mtime, ctime and inode, with the SHA-256 of its
  bytes and whether it has colour. A file whose stat matches is not read again (git's index does the same; a
  write always changes ctime, which no tool can set back).
- ``<channels>x<height>x<width>-<resize>.npz``: the decoded uint8 images of one size and resize policy, by
  content SHA-256, and the files that could not be decoded, with why.

Images are found by their content's SHA-256, so a changed, added or renamed file is decoded again and every
other file is reused; a removed one is dropped at the next write. A cache file that cannot be read (cut,
emptied, foreign) is ignored and rewritten: it can cost a decode, never serve a wrong image. Writes are atomic
(two runs on one folder may both write; either file is whole).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.fileio import atomic_open, atomic_write_text, remove_stale_parts

VERSION = 1  # of the decoding rules (trainlab.data.decode); a change of rules starts a new cache


@dataclass(frozen=True)
class FileStat:
    """What a file's stat says, and what reading it once told: its content SHA-256 and whether it has colour."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    sha256: str = ""
    colour: bool = False

    def same_file(self, other: FileStat) -> bool:
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode) == (other.size, other.mtime_ns,
                                                                          other.ctime_ns, other.inode)


def stat_of(path: Path) -> FileStat:
    st = path.stat()
    return FileStat(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass
class DecodedImages:
    """Decoded images of one variant (channels, size, resize) by content SHA-256; and the files refused."""

    images: dict[str, np.ndarray] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # SHA-256 -> why it could not be decoded


class ImageCache:
    """The cache of one image folder; every method is a no-op or a miss when ``enabled`` is false."""

    def __init__(self, data_dir: Path, folder: Path, enabled: bool = True) -> None:
        key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
        self.dir = Path(data_dir) / "cache" / "images" / f"{folder.name[:40]}-{key}"
        self.enabled = enabled
        self.problems: list[str] = []  # cache files unreadable or not written: said once, never fatal
        self.unwritable = False  # a write failed: the rest are not tried (one warning, not one per file)

    def _variant_path(self, channels: int, size: tuple[int, int], resize: str) -> Path:
        return self.dir / f"v{VERSION}-{channels}x{size[0]}x{size[1]}-{resize}.npz"

    def read_stats(self) -> dict[str, FileStat]:
        if not self.enabled:
            return {}
        path = self.dir / "files.json"
        try:
            raw = json.loads(path.read_text()) if path.is_file() else {}
            return {name: FileStat(**fields) for name, fields in raw.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            self.problems.append(f"{path} could not be read; every file was read again")
            return {}

    def write_stats(self, stats: dict[str, FileStat]) -> None:
        if self.enabled:
            self._write(lambda: atomic_write_text(
                self.dir / "files.json", json.dumps({name: s.__dict__ for name, s in stats.items()})))

    def read_images(self, channels: int, size: tuple[int, int], resize: str) -> DecodedImages:
        path = self._variant_path(channels, size, resize)
        if not self.enabled or not path.is_file():
            return DecodedImages()
        try:
            with np.load(path, allow_pickle=False) as npz:
                shas, x = npz["sha256"], npz["x"]
                refused_sha, refused_why = npz["refused_sha256"], npz["refused_why"]
                if x.dtype != np.uint8 or x.shape[1:] != (channels, *size) or len(shas) != len(x):
                    raise ValueError(f"holds {x.dtype} {x.shape} for {len(shas)} files")
                return DecodedImages({str(s): x[i] for i, s in enumerate(shas)},
                                     {str(s): str(w) for s, w in zip(refused_sha, refused_why, strict=True)})
        except Exception as exc:  # noqa: BLE001  cut, emptied or foreign: decode again, and rewrite it
            self.problems.append(f"{path} could not be read ({type(exc).__name__}); its images were decoded again")
            return DecodedImages()

    def write_images(self, channels: int, size: tuple[int, int], resize: str, decoded: DecodedImages) -> None:
        if not self.enabled:
            return
        shas = sorted(decoded.images)
        x = np.stack([decoded.images[s] for s in shas]) if shas else np.zeros((0, channels, *size), np.uint8)
        arrays: dict[str, Any] = {"sha256": np.asarray(shas, dtype="U64"), "x": x,
                                  "refused_sha256": np.asarray(sorted(decoded.refused), dtype="U64"),
                                  "refused_why": np.asarray([decoded.refused[s] for s in sorted(decoded.refused)],
                                                            dtype=str)}

        def write() -> None:
            with atomic_open(self._variant_path(channels, size, resize)) as fh:
                np.savez(fh, **arrays)

        self._write(write)

    def _write(self, write: Any) -> None:
        if self.unwritable:
            return  # said once
        try:
            remove_stale_parts(self.dir)
            write()
        except OSError as exc:  # a full disk or a read-only data_dir: the run goes on without the cache
            self.unwritable = True
            self.problems.append(f"the image cache in {self.dir} could not be written ({os.strerror(exc.errno or 0) or exc}); "
                                 "the next run reads or decodes these images again")
