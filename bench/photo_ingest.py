"""Reading a folder of phone-sized photos: the first run (decode, with and without JPEG draft mode) and the second
(served from the decode cache).

The folder is made once from the photographs in scikit-image's wheel (chelsea, coffee, astronaut, rocket,
motorcycle, and the brick / grass / gravel textures): random crops scaled to 1-4 megapixels, saved as JPEG
(quality 90) in one class folder per source photo. Files are in the page cache when timed (just written or
read), as on a second look at one's own folder; a cold disk adds its read time to the first run only.

    python bench/photo_ingest.py [--photos 2000] [--size 64] [--folder /tmp/trainlab-photos]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import print_cpu_line, run_main

SOURCES = ("chelsea", "coffee", "astronaut", "rocket", "stereo_motorcycle", "brick", "grass", "gravel")


def make_folder(root: Path, photos: int, seed: int = 0) -> int:
    """``photos`` JPEGs of 1-4 MP under root/train/<source>/; returns the bytes written (kept if already there)."""
    import skimage.data
    from PIL import Image

    existing = sorted(root.rglob("*.jpg"))
    if len(existing) == photos:
        return sum(p.stat().st_size for p in existing)
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    written = 0
    for i in range(photos):
        name = SOURCES[i % len(SOURCES)]
        pixels = getattr(skimage.data, name)()
        photo = Image.fromarray(np.asarray(pixels[0] if isinstance(pixels, tuple) else pixels)).convert("RGB")
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        megapixels = rng.uniform(1.0, 4.0)
        scale = (megapixels * 1e6 / (cw * ch)) ** 0.5
        img = photo.crop((left, top, left + cw, top + ch)).resize((int(cw * scale), int(ch * scale)),
                                                                  Image.Resampling.BILINEAR)
        folder = root / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}_{i:05d}.jpg"
        img.save(path, quality=90)
        written += path.stat().st_size
    return written


def load_seconds(root: Path, size: int, data_dir: Path, cache: bool) -> tuple[float, int]:
    from trainlab.config import DataConfig
    from trainlab.data import create_dataset

    cfg = DataConfig(name="imagefolder", path=root, image_size=(size, size), data_dir=data_dir, cache=cache,
                     test_fraction=0.2)
    started = time.perf_counter()
    ds = create_dataset(cfg)
    return time.perf_counter() - started, len(ds.train_y) + len(ds.test_y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64, help="data.image_size (pixels, square)")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "trainlab-photos")
    args = parser.parse_args()

    import trainlab.data.decode as decode

    print_cpu_line()
    started = time.perf_counter()
    size_bytes = make_folder(args.folder, args.photos)
    print(f"folder: {args.photos:,} JPEG photos of 1-4 MP, {size_bytes / 1e9:.2f} GB "
          f"(made or found in {time.perf_counter() - started:.0f} s) -> {args.size}x{args.size} RGB, resize squish")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        load_seconds(args.folder, args.size, data_dir / "warm", cache=False)  # files into the page cache
        full_draft = decode._draft
        decode._draft = lambda *a, **k: None  # every JPEG fully decoded, then resized
        no_draft, n = load_seconds(args.folder, args.size, data_dir / "none", cache=False)
        decode._draft = full_draft
        first, _ = load_seconds(args.folder, args.size, data_dir / "cache", cache=True)
        second, _ = load_seconds(args.folder, args.size, data_dir / "cache", cache=True)
    print(f"first run, draft mode off (full decode): {no_draft:6.2f} s   {n / no_draft:7,.0f} images/s")
    print(f"first run, draft mode on:                {first:6.2f} s   {n / first:7,.0f} images/s   "
          f"({no_draft / first:.1f}x faster than off)")
    print(f"second run, from the cache:              {second:6.2f} s   {n / second:7,.0f} images/s   "
          f"({first / second:.0f}x faster than the first)")


if __name__ == "__main__":
    run_main("photo_ingest", main)
