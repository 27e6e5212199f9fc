"""One photo file to one uint8 (C, H, W) array: upright, in the dataset's channels, at the dataset's size.

The rules, in order (docs/your-data.md repeats them):

1. A JPEG much larger than the target is decoded at 1/2, 1/4 or 1/8 scale (Pillow's draft mode): a 12-MP photo
   is never fully decoded to make a 64-pixel image.
2. The EXIF orientation is applied (``ImageOps.exif_transpose``): a phone photo taken sideways is seen upright.
3. Modes: transparency (RGBA, LA, P with a transparent colour) is composited on white; 16-bit images
   (I;16, I) are scaled from 0..65535 to 0..255; float images (F) are clipped to 0..255; CMYK, palette and
   the rest are converted by Pillow. Then to L (grey, ITU-R 601-2 luma) or RGB.
4. Resize, by ``data.resize``: squish (stretch to the size), crop (scale to cover it, cut the centre) or
   pad (scale to fit inside it, black borders); bilinear, antialiased.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from trainlab.errors import CorruptDataError

DRAFT_FORMATS = ("JPEG",)  # formats Pillow can decode at a reduced scale
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_TRANSPARENT = ("RGBA", "LA", "PA", "La", "RGBa")


def decode_image(content: bytes, name: str, mode: str, size: tuple[int, int], resize: str) -> np.ndarray:
    """``content`` (a file's bytes) as uint8 (C, H, W); CorruptDataError names ``name`` and why it was refused."""
    if not content:
        raise CorruptDataError(f"image {name!r} cannot be read (it is empty, 0 bytes); remove or replace it")
    try:
        with warnings.catch_warnings():
            # over Pillow's pixel limit: a few bytes that would decode to gigabytes; refused, not decoded
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as opened:
                _draft(opened, size, resize)
                upright = ImageOps.exif_transpose(opened)
                pixels = _fit(to_mode(upright, mode), size, resize)
                arr = np.asarray(pixels, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        first = str(exc.args[0]).split(",")[0] if exc.args else "too many pixels"
        raise CorruptDataError(f"image {name!r} is too large to decode safely ({first}); shrink it, or remove it") from None
    except UnidentifiedImageError:
        raise CorruptDataError(f"image {name!r} cannot be read (not an image format Pillow knows); remove or replace it") from None
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, EOFError) as exc:
        raise CorruptDataError(f"image {name!r} cannot be read ({exc}); remove or replace it") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def is_colour(content: bytes) -> bool:
    """Whether the file's mode has colour (read from its header only); unreadable files count as grey."""
    try:
        with Image.open(io.BytesIO(content)) as img:
            if img.mode == "P":
                palette = img.getpalette() or []
                rgb = np.asarray(palette[: len(palette) // 3 * 3]).reshape(-1, 3)
                return bool((rgb != rgb[:, :1]).any())
            return img.mode not in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
    except Exception:  # noqa: BLE001  decode_image reports it, with the file's name
        return False


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """``img`` in ``mode`` ("L" or "RGB") by the rules in the module's docstring."""
    if img.mode in _SIXTEEN_BIT:
        wide = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.round(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8), "L")
    elif img.mode in _TRANSPARENT or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == mode else img.convert(mode)


def _fit(img: Image.Image, size: tuple[int, int], resize: str) -> Image.Image:
    height, width = size
    if img.size == (width, height):
        return img
    if resize == "crop":
        return ImageOps.fit(img, (width, height), Image.Resampling.BILINEAR)
    if resize == "pad":
        return ImageOps.pad(img, (width, height), Image.Resampling.BILINEAR, color=0)
    return img.resize((width, height), Image.Resampling.BILINEAR)


def _draft(img: Any, size: tuple[int, int], resize: str) -> None:
    """Ask a JPEG decoder for the smallest scale whose pixels still cover what the resize needs."""
    if img.format not in DRAFT_FORMATS:
        return
    height, width = size
    w, h = img.size
    if img.getexif().get(0x0112, 1) in _ROTATED:
        width, height = height, width  # the target, in the file's own (unrotated) axes
    if resize == "squish":
        need = (width, height)
    else:  # cover (crop) or fit (pad): one scale for both sides
        scale = max(width / w, height / h) if resize == "crop" else min(width / w, height / h)
        need = (max(1, round(w * scale)), max(1, round(h * scale)))
    if need[0] * 2 <= w and need[1] * 2 <= h:
        img.draft(img.mode, need)
