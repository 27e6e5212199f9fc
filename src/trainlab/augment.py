"""Augmentation of training batches: uint8 (N, C, H, W) tensors in, changed batches out, drawn from a generator."""

from __future__ import annotations

from collections.abc import Callable

import torch

from trainlab.config import AugmentConfig

Augmenter = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def make_augmenter(cfg: AugmentConfig, input_shape: tuple[int, ...]) -> Augmenter | None:
    """The batch transform ``cfg`` asks for, or None when it asks for nothing."""
    if not cfg.active():
        return None
    raise NotImplementedError("augmentation")
