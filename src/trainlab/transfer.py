"""Training on a pretrained backbone: its weights loaded and the blocks a fine-tune leaves alone frozen, and for
a linear probe, what the training loop sees instead of images (the frozen backbone's features, cached)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from trainlab.backbones import load_pretrained, pretrained_file
from trainlab.config import AugmentConfig, Config
from trainlab.data import Splits
from trainlab.evaluate import Evaluation, evaluate, timed_logits
from trainlab.features import probe_features
from trainlab.models import Classifier, ProbeView

TIMED_IMAGES = 32  # a probe's test split is scored on its cached features; its inference rate is timed on these


def model_description(model: Classifier, cfg: Config) -> str:
    """The model as the start line names it: its architecture, and on a backbone its weights and fine-tune."""
    if model.backbone is None:
        return cfg.model.arch
    weights = f"weights {model.pretrained['file']}" if model.pretrained.get("file") else "random weights"
    return f"{cfg.model.arch}, {weights}, {cfg.train.finetune.replace('_', ' ')}"


def backbone_warnings(model: Classifier, cfg: Config) -> list[str]:
    """What makes a backbone run unlikely to help: random weights under a probe, images far below its size."""
    from trainlab.backbones import BACKBONES

    found = []
    if cfg.train.finetune == "linear_probe" and model.pretrained.get("weights") == "none":
        found.append("train.finetune: linear_probe with model.pretrained: none trains a head on a random network's "
                     "features; set model.pretrained: package (or a file) for pretrained ones")
    native = BACKBONES[cfg.model.arch].size
    if min(model.input_shape[1:]) * 4 <= native:
        shape = "x".join(map(str, model.input_shape[1:]))
        found.append(f"images of {shape} px are far below {cfg.model.arch}'s {native} px: its ImageNet features will "
                     f"be poor; set data.image_size: 128 or more (up to {native})")
    return found


def probe_or_full(model: Classifier, splits: Splits, cfg: Config, device: torch.device, warn: Callable[[str], None],
                  say: Callable[[str], None]) -> tuple[torch.nn.Module, Splits, AugmentConfig | None, dict[str, float]]:
    """What the loop trains on: the images (the whole model), or for a linear probe the head on the frozen
    backbone's features, computed once per image (and cached); and facts for the run's summary (their time).
    ``say`` tells the user while the features are computed."""
    if model.backbone is not None:
        for warning in backbone_warnings(model, cfg):
            warn(warning)
    if cfg.train.finetune != "linear_probe":
        return model, splits, cfg.data.augment, {}
    if cfg.data.augment.active():
        warn("train.finetune: linear_probe trains on features computed once per image, so data.augment is not "
             "applied; use finetune: full to train on augmented images")
    images = len(splits.train_y) + len(splits.val_y) + len(splits.test_y)
    probe = probe_features(model, splits, cfg.data.data_dir, cfg.train.eval_batch_size, device, cfg.data.cache,
                           starting=lambda: say(f"features: {images:,} images through {cfg.model.arch}, once ..."))
    for problem in probe.problems:
        warn(problem)
    if probe.cached:
        say(f"features: {images:,} images read from the cache in {probe.seconds:.2f} s")
    else:
        say(f"features: {images:,} images in {probe.seconds:.1f} s ({probe.images_per_second:,.0f} images/s)"
            + ("" if probe.problems or not cfg.data.cache else ", cached for the next run"))
    facts = {"features_seconds": probe.seconds, "features_cached": float(probe.cached),
             **({"features_images_per_second": probe.images_per_second} if not probe.cached else {})}
    return ProbeView(model), probe.splits, None, facts


def prepare_backbone(model: Classifier, cfg: Config) -> None:
    """Load the pretrained weights (their file's SHA-256 kept on the model for the record) and freeze what the
    fine-tune leaves alone."""
    layer = model.backbone
    assert layer is not None
    pretrained = cfg.model.pretrained or "package"
    model.pretrained = {"weights": "none"}
    if pretrained != "none":
        path = pretrained_file(cfg.model.arch, pretrained)
        model.pretrained = {"weights": pretrained, "file": path.name, "sha256": load_pretrained(layer, path)}
    model.frozen_batchnorm = cfg.train.freeze_batchnorm or cfg.train.finetune == "linear_probe"
    blocks = layer.blocks()
    keep = len(blocks) if cfg.train.last_n_blocks is None else cfg.train.last_n_blocks
    if cfg.train.finetune == "linear_probe":
        keep = 0
    for block in blocks[: len(blocks) - keep]:
        block.requires_grad_(False)


def evaluate_test(best: Classifier, trained_on: Splits, splits: Splits, class_names: Sequence[str],
                  batch_size: int) -> Evaluation:
    """The test metrics of the best model. A linear probe's are its head on the test features already computed
    (the body is frozen, so they are the body's output for those images: the same logits, without running the
    backbone a second time); its images/s is still the whole model's, timed on a few test images. With flip
    test-time augmentation the mirrored images have no features, so the whole model runs."""
    if trained_on is splits or best.tta != "none":
        return evaluate(best, splits.test_x, splits.test_y, class_names, batch_size)
    report = evaluate(ProbeView(best), trained_on.test_x, splits.test_y, class_names, batch_size)
    report.metrics["images_per_second"] = timed_logits(best, splits.test_x[:TIMED_IMAGES], batch_size)[1]
    return report
