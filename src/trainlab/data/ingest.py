"""An image folder's files to decoded pixels: hashed once, decoded once, then served from the cache.

Two passes over the files, each spread over threads (Pillow and hashlib release the GIL): the first reads
and hashes the files the cache does not know (or whose stat changed) and notes whether they have colour, which
decides the dataset's channels; the second decodes what the cache does not hold at this size and policy.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from trainlab.config import DataConfig
from trainlab.data.decode import decode_image, is_colour
from trainlab.data.fetch import DownloadProgress
from trainlab.data.image_cache import DecodedImages, FileStat, ImageCache, stat_of
from trainlab.errors import CorruptDataError, DataError

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Ingested:
    """The decoded images of a folder's files (files that could not be decoded are absent), and how it went."""

    channels: int
    pixels: dict[Path, np.ndarray] = field(default_factory=dict)
    sha256: dict[Path, str] = field(default_factory=dict)  # every file's content digest (also the refused ones)
    decoded: int = 0  # files decoded by this call; the rest came from the cache
    summary: str = ""  # for the start line: "cache hit: 2,000 images, none decoded"
    problems: list[str] = field(default_factory=list)  # about the cache: said once, never fatal


def ingest(root: Path, paths: Sequence[Path], cfg: DataConfig, size: tuple[int, int],
           progress: DownloadProgress | None = None) -> Ingested:
    """Decode ``paths`` (files under ``root``) at ``size`` by ``cfg.resize``; refused files are left out (or, with
    ``cfg.strict``, the first one is a CorruptDataError naming it)."""
    cache = ImageCache(cfg.data_dir, root, cfg.cache)
    known = cache.read_stats()
    names = {p: p.relative_to(root).as_posix() for p in paths}
    stats = _current_stats(paths, names, known, progress, root)
    channels = cfg.channels or (3 if any(s.colour for s in stats.values()) else 1)
    check_memory(len(paths), channels, size)
    stored = cache.read_images(channels, size, cfg.resize)
    result = Ingested(channels, sha256={p: stats[p].sha256 for p in paths})
    missing = [p for p in paths if stats[p].sha256 not in stored.images and stats[p].sha256 not in stored.refused]
    mode = "L" if channels == 1 else "RGB"

    def decode(path: Path) -> np.ndarray | str:
        try:
            return decode_image(path.read_bytes(), names[path], mode, size, cfg.resize)
        except CorruptDataError as exc:
            return str(exc)
        except OSError as exc:
            return f"image {names[path]!r} cannot be read ({exc.strerror}); remove or replace it"

    total = sum(stats[p].size for p in missing)
    for path, outcome in zip(missing, _threaded(decode, missing, _bytes_progress(progress, f"decode {root.name}/",
                                                                                   [stats[p].size for p in missing],
                                                                                   total)), strict=True):
        target = stored.images if isinstance(outcome, np.ndarray) else stored.refused
        target[stats[path].sha256] = outcome  # type: ignore[assignment]
    for path in paths:
        sha = stats[path].sha256
        if sha in stored.images:
            result.pixels[path] = stored.images[sha]
        elif cfg.strict:
            why = stored.refused[sha]
            if quoted := re.match(r"image '.*?' ", why):  # the refusal may be cached under another name (a copy)
                why = f"image {names[path]!r} {why[quoted.end():]}"
            raise CorruptDataError(f"{why}, or set data.strict: false to skip such files")
    result.decoded = len(missing)
    now = {names[p]: stats[p] for p in paths}
    if now != known:  # a file changed, came or went
        cache.write_stats(now)
    current = {stats[p].sha256 for p in paths}
    if missing or set(stored.images) | set(stored.refused) != current:
        cache.write_images(channels, size, cfg.resize, DecodedImages(
            {s: x for s, x in stored.images.items() if s in current},
            {s: w for s, w in stored.refused.items() if s in current}))
    decoded_ok = sum(1 for p in missing if stats[p].sha256 in stored.images)
    result.summary = _summary(len(result.pixels), decoded_ok, cfg.cache and not cache.unwritable)
    result.problems = cache.problems
    return result


MEMORY_SHARE = 0.5  # decoded images may take at most this share of the memory available when loading starts


def check_memory(images: int, channels: int, size: tuple[int, int]) -> None:
    """Refuse, before decoding, a size whose decoded images (held twice while stacking) would not fit in memory."""
    import psutil

    needed = 2 * images * channels * size[0] * size[1]
    available = psutil.virtual_memory().available
    if needed > MEMORY_SHARE * available:
        raise DataError(f"data.image_size = {size[0]}x{size[1]} would need {needed / 1e9:.1f} GB to hold {images:,} "
                        f"decoded images, and {available / 1e9:.1f} GB of memory is available; use a smaller "
                        "data.image_size (64 to 224 suits photos)")


def _summary(files: int, decoded: int, cached: bool) -> str:
    """``files`` images read, ``decoded`` of them decoded by this call (refused files are counted elsewhere);
    ``cached``: the cache is on and could be written."""
    if not cached:
        return f"decoded {decoded:,} of {files:,} images (not cached)" if decoded != files else \
            f"decoded {files:,} images (not cached)"
    if decoded == 0:
        return f"cache hit: {files:,} images, none decoded"
    if decoded == files:
        return f"decoded {files:,} images into the cache"
    return f"cache: {files - decoded:,} images reused, {decoded:,} new or changed decoded"


def _current_stats(paths: Sequence[Path], names: dict[Path, str], known: dict[str, FileStat],
                   progress: DownloadProgress | None, root: Path) -> dict[Path, FileStat]:
    """Each file's stat, content SHA-256 and colour: from the cache when its stat is unchanged, else read."""
    stats = {p: stat_of(p) for p in paths}
    fresh = {p: known[names[p]] for p in paths if names[p] in known and known[names[p]].same_file(stats[p])}
    unread = [p for p in paths if p not in fresh]

    def read(path: Path) -> FileStat:
        try:
            content = path.read_bytes()
        except OSError:  # permissions: the decode pass refuses it, naming why; a chmod changes ctime, so it is read again
            return replace(stats[path], sha256=hashlib.sha256(f"unreadable {names[path]}".encode()).hexdigest())
        return replace(stats[path], sha256=hashlib.sha256(content).hexdigest(), colour=is_colour(content))

    sizes = [stats[p].size for p in unread]
    for path, stat in zip(unread, _threaded(read, unread, _bytes_progress(progress, f"read {root.name}/", sizes,
                                                                           sum(sizes))), strict=True):
        fresh[path] = stat
    return fresh


def _bytes_progress(progress: DownloadProgress | None, name: str, sizes: list[int],
                    total: int) -> Callable[[int], None] | None:
    """Report bytes done after each item, for work large enough to show (over 20 MB)."""
    if progress is None or total < 20_000_000:
        return None
    done = [0]

    def step(index: int) -> None:
        done[0] += sizes[index]
        progress(name, done[0], total)

    return step


def _threaded(work: Callable[[T], R], items: Sequence[T], after: Callable[[int], None] | None) -> Iterable[R]:
    """``work`` over ``items`` on a few threads, results in order (Pillow and hashlib release the GIL)."""
    if len(items) < 8:
        for i, item in enumerate(items):
            yield work(item)
            if after:
                after(i)
        return
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="trainlab-decode") as pool:
        for i, result in enumerate(pool.map(work, items)):
            if after:
                after(i)
            yield result
