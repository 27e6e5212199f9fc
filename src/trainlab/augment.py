"""Augmentation of training batches: uint8 (N, C, H, W) tensors in, changed batches out, drawn from a generator.

Each option is a few tensor operations over the whole batch (no Python loop over images, no PIL), in the order
resized crop, translate, flip, colour jitter, cutout. Every random number comes from the generator passed in,
never from torch's global one (dropout draws from that), so a run is bit-identical for the same seed, thread
count and CPU. The result stays uint8 when only flip and translate are on; otherwise it is float32 in 0..255
(the model normalises either itself).

Cost per 512 x 3 x 32 x 32 batch (flip + translate: about 1.7 ms on one thread of a shared 2-core Xeon, an
element-wise gather): docs/configs.md#augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from trainlab.config import AugmentConfig
from trainlab.errors import ConfigError

Augmenter = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

GREY = 127.5  # the model's default mean pixel value: a cutout square carries no signal
ASPECT = (3 / 4, 4 / 3)  # random-resized crop: the crop's width / height, drawn log-uniform in this range
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights of R, G, B in the grey image
GRID_ROWS, GRID_GAP = 8, 2  # augmented_grid: sample images shown, pixels between tiles


@dataclass(frozen=True)
class BatchAugmenter:
    """The configured options applied to a batch, in a fixed order, drawing from the generator given."""

    cfg: AugmentConfig

    def __call__(self, images: torch.Tensor, draws: torch.Generator) -> torch.Tensor:
        cfg = self.cfg
        out = images
        if cfg.resized_crop < 1.0:
            out = resized_crop(out.float(), cfg.resized_crop, draws)
        if cfg.translate or cfg.flip:
            out = translate_and_flip(out, cfg.translate, cfg.flip, draws)
        if cfg.color_jitter:
            out = color_jitter(out.float(), cfg.color_jitter, draws)
        if cfg.cutout:
            out = cutout_(out.to(torch.float32, copy=out is images), cfg.cutout, draws)  # never the caller's batch
        return out


def make_augmenter(cfg: AugmentConfig, input_shape: tuple[int, ...]) -> Augmenter | None:
    """The batch transform ``cfg`` asks for, or None when it asks for nothing."""
    if not cfg.active():
        return None
    if len(input_shape) != 3:
        raise ValueError(f"augmentation works on (channels, height, width) images; got input shape {input_shape}")
    side = min(input_shape[1:])
    # a shift of the whole image or more leaves only repeated edge pixels; a square larger than the image blanks it
    for name, value, limit in (("translate", cfg.translate, side - 1), ("cutout", cfg.cutout, side)):
        if value > limit:
            raise ConfigError(f"data.augment.{name} = {value} px is too large for images of {side} px on their "
                              f"shorter side; use at most {limit}, about {max(1, side // 8)} suits them")
    return BatchAugmenter(cfg)


def resized_crop(images: torch.Tensor, min_area: float, draws: torch.Generator) -> torch.Tensor:
    """A random region per image (area share in [min_area, 1], aspect in ASPECT), scaled back to full size."""
    n, c, h, w = images.shape
    area = min_area + (1.0 - min_area) * torch.rand(n, generator=draws)
    low, high = math.log(ASPECT[0]), math.log(ASPECT[1])
    aspect = torch.exp(low + (high - low) * torch.rand(n, generator=draws))  # width / height, in pixels
    # the crop's sides as shares of the image's; a side longer than the image is cut to it (a smaller area)
    width = torch.sqrt(area * aspect * h / w).clamp(max=1.0)
    height = torch.sqrt(area / aspect * w / h).clamp(max=1.0)
    # the crop's centre in grid_sample's coordinates (-1..1 edge to edge), kept inside the image
    centre_x = (2 * torch.rand(n, generator=draws) - 1) * (1 - width)
    centre_y = (2 * torch.rand(n, generator=draws) - 1) * (1 - height)
    zero = torch.zeros(n)
    theta = torch.stack([torch.stack([width, zero, centre_x], 1), torch.stack([zero, height, centre_y], 1)], 1)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.clamp_(0, 255)  # bilinear weights can overshoot 255 by a rounding error


def translate_and_flip(images: torch.Tensor, shift: int, flip: bool, draws: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``shift`` px in x and y (edge pixels repeated), then mirror a random half."""
    n, c, h, w = images.shape
    if shift:
        dy = torch.randint(-shift, shift + 1, (n, 1), generator=draws)
        dx = torch.randint(-shift, shift + 1, (n, 1), generator=draws)
    mirrored = torch.rand(n, generator=draws) < 0.5 if flip else None
    if not shift:
        return mirror(images, mirrored) if mirrored is not None else images
    # where each output pixel comes from: clamping the coordinates repeats the edge (replicate padding)
    rows = (torch.arange(h) + dy).clamp_(0, h - 1)
    cols = (torch.arange(w) + dx).clamp_(0, w - 1)
    if mirrored is not None:
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    index = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return images.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)


def mirror(images: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
    """The images with those where ``mirrored`` is set flipped left-right."""
    picked = mirrored.nonzero().squeeze(1)
    source = torch.arange(len(images))
    source[picked] = len(images) + torch.arange(len(picked))
    # whole-image copies: three times cheaper than torch.where or index_copy on a uint8 batch
    return torch.cat([images, images.index_select(0, picked).flip(-1)]).index_select(0, source)


def color_jitter(images: torch.Tensor, strength: float, draws: torch.Generator) -> torch.Tensor:
    """Brightness, contrast (around the mean grey) and saturation (RGB) scaled per image by [1 - s, 1 + s]."""
    n, c = images.shape[:2]
    brightness, contrast, saturation = 1 + strength * (2 * torch.rand(3, n, 1, 1, 1, generator=draws) - 1)
    # the three steps are linear, so they fold into one pass: scale and offset per image, then the grey blend
    grey = luminance(images)
    scale = brightness * contrast
    offset = brightness * (1 - contrast) * grey.mean(dim=(1, 2, 3), keepdim=True)
    if c != 3:
        return torch.addcmul(offset, images, scale).clamp_(0, 255)
    towards_grey = (1 - saturation) * scale * grey + offset
    return torch.addcmul(towards_grey, images, saturation * scale).clamp_(0, 255)


def luminance(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grey version of RGB images (ITU-R 601 weights); one-channel images as they are."""
    if images.shape[1] != 3:
        return images.mean(dim=1, keepdim=True)
    weights = torch.tensor(LUMA, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def cutout_(images: torch.Tensor, side: int, draws: torch.Generator) -> torch.Tensor:
    """Fill a ``side`` x ``side`` grey square per image around a random pixel, in place (it may pass the edges)."""
    n, _, h, w = images.shape
    offsets = torch.arange(side) - side // 2
    # a square's rows and columns past the edge are clamped onto it: they land on pixels the square covers anyway
    rows = (torch.randint(0, h, (n, 1), generator=draws) + offsets).clamp_(0, h - 1)
    cols = (torch.randint(0, w, (n, 1), generator=draws) + offsets).clamp_(0, w - 1)
    images[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]] = GREY
    return images


def augmented_grid(images: np.ndarray, cfg: AugmentConfig, seed: int, per_image: int = 4) -> np.ndarray:
    """A uint8 (C, H', W') mosaic: a row per sample image (up to 8), the original then ``per_image`` draws."""
    picked = np.unique(np.linspace(0, len(images) - 1, min(GRID_ROWS, len(images))).astype(int))
    batch = torch.from_numpy(np.ascontiguousarray(images[picked]))
    augmenter = make_augmenter(cfg, tuple(batch.shape[1:]))
    draws = torch.Generator().manual_seed(seed)
    columns = [batch] + [augmenter(batch, draws) if augmenter is not None else batch for _ in range(per_image)]
    n, c, h, w = batch.shape
    step_y, step_x = h + GRID_GAP, w + GRID_GAP
    mosaic = np.full((c, n * step_y - GRID_GAP, len(columns) * step_x - GRID_GAP), 255, dtype=np.uint8)
    for j, column in enumerate(columns):
        tiles = column.float().round().clamp(0, 255).to(torch.uint8).numpy()
        for i in range(n):
            mosaic[:, i * step_y:i * step_y + h, j * step_x:j * step_x + w] = tiles[i]
    return mosaic
