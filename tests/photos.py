"""Image folders built from real photographs that ship in packages (scikit-image's and scikit-learn's), and the
awkward files people's folders hold: EXIF-rotated, transparent, 16-bit, CMYK, truncated, empty, bomb-sized."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

TEXTURES = ("brick", "grass", "gravel")  # 512x512 grey photographs in skimage.data


def texture(name: str) -> np.ndarray:
    import skimage.data

    return np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)


def chelsea() -> Image.Image:
    """scikit-image's photo of Chelsea the cat, 451x300 RGB."""
    import skimage.data

    return Image.fromarray(skimage.data.chelsea())


def write_texture_folder(root: Path, train_per_class: int = 40, test_per_class: int = 20, val_per_class: int = 0,
                         seed: int = 0) -> Path:
    """3 classes of random crops of the brick / grass / gravel photos, as JPEG and PNG files of 96-224 px, grey or
    RGB (a tint), rotated by multiples of 90 degrees. Training crops come from the top 60% of each photo, held-out
    crops from the rest: no test pixel was seen in training."""
    rng = np.random.default_rng(seed)
    for name in TEXTURES:
        photo = texture(name)
        cut = int(photo.shape[0] * 0.6)
        for split, count, rows in (("train", train_per_class, (0, cut)), ("val", val_per_class, (cut, photo.shape[0])),
                                   ("test", test_per_class, (cut, photo.shape[0]))):
            folder = root / split / name
            for i in range(count):
                folder.mkdir(parents=True, exist_ok=True)
                side = int(rng.integers(96, min(224, rows[1] - rows[0]) + 1))
                top = int(rng.integers(rows[0], rows[1] - side + 1))
                left = int(rng.integers(0, photo.shape[1] - side + 1))
                crop = np.rot90(photo[top:top + side, left:left + side], int(rng.integers(0, 4)))
                img = Image.fromarray(np.ascontiguousarray(crop), "L")
                if rng.random() < 0.5:  # some photos in colour: the same texture, slightly tinted
                    tint = rng.uniform(0.85, 1.15, size=3)
                    img = Image.fromarray(np.clip(np.asarray(img)[..., None] * tint, 0, 255).astype(np.uint8), "RGB")
                if rng.random() < 0.5:
                    img.save(folder / f"{name}_{i:03d}.jpg", quality=int(rng.integers(75, 96)))
                else:
                    img.save(folder / f"{name}_{i:03d}.png")
    return root


def exif_rotated(upright: Image.Image, fmt: str = "PNG") -> bytes:
    """``upright`` stored turned 90 degrees, with EXIF orientation 6 saying how to turn it back (as phones do)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": exif_transpose applies ROTATE_270
    buffer = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buffer, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid 1x1 grey PNG whose header claims ``width`` x ``height`` pixels: a few bytes, gigabytes if decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b"")


def png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def write_bad_photos(folder: Path) -> dict[str, str]:
    """Files that are not usable photos, by name -> what is wrong; written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    good = io.BytesIO()
    chelsea().save(good, "JPEG", quality=90)
    import tifffile

    bad = {
        "truncated.jpg": good.getvalue()[: len(good.getvalue()) // 3],
        "empty.png": b"",
        "notes.jpg": b"this is a text file with an image's name\n",
        "bomb.png": bomb_png(),
    }
    for name, content in bad.items():
        (folder / name).write_bytes(content)
    tifffile.imwrite(folder / "two_channel.tif", np.zeros((8, 8, 2), dtype=np.uint16), photometric="minisblack",
                     planarconfig="contig")
    return {"truncated.jpg": "truncated", "empty.png": "0 bytes", "notes.jpg": "not an image",
            "bomb.png": "bomb-sized", "two_channel.tif": "unsupported mode"}


def write_lfw_folder(root: Path, train_per_class: int = 10, seed: int = 0) -> Path:
    """scikit-image's labelled faces: 100 faces (LFW) and 100 non-faces, 25x25 grey, as PNGs in train/ and test/:
    ``train_per_class`` of each class to train on, the rest held out."""
    import skimage.data

    images = np.asarray(skimage.data.lfw_subset())  # (200, 25, 25) floats in 0..1; faces first
    pixels = np.clip(np.round(images * 255), 0, 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    for label, name in ((0, "face"), (1, "not_face")):
        order = rng.permutation(np.arange(label * 100, label * 100 + 100))
        for i, index in enumerate(order):
            split = "train" if i < train_per_class else "test"
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[index], "L").save(folder / f"{name}_{index:03d}.png")
    return root
