"""Batch augmentation on real images: scikit-learn's digits (1 channel) and scikit-image's cat photo (RGB)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from trainlab.augment import GREY, augmented_grid, make_augmenter
from trainlab.config import AugmentConfig

ALL = AugmentConfig(flip=True, translate=4, resized_crop=0.35, color_jitter=0.3, cutout=8)
ALONE = {"flip": {"flip": True}, "translate": {"translate": 3}, "resized_crop": {"resized_crop": 0.35},
         "color_jitter": {"color_jitter": 0.4}, "cutout": {"cutout": 6}}


def digits(n: int = 64) -> torch.Tensor:
    """(n, 1, 8, 8) uint8 handwritten digits, 0..255."""
    from sklearn.datasets import load_digits

    images = load_digits().images[:n] * (255 / 16)
    return torch.from_numpy(images.round().astype(np.uint8))[:, None]


def cats(n: int = 16, size: int = 64) -> torch.Tensor:
    """(n, 3, size, size) uint8 copies of the chelsea cat photo: every image gets its own draws."""
    from skimage.data import chelsea

    photo = torch.from_numpy(chelsea()).permute(2, 0, 1)[None].float()
    small = F.interpolate(photo, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return small.round().clamp(0, 255).to(torch.uint8).expand(n, -1, -1, -1).contiguous()


BATCHES = {"digits": digits, "cat": cats}


def augment(images: torch.Tensor, cfg: AugmentConfig, seed: int = 0) -> torch.Tensor:
    augmenter = make_augmenter(cfg, tuple(images.shape[1:]))
    assert augmenter is not None
    return augmenter(images, torch.Generator().manual_seed(seed))


def test_nothing_asked_gives_no_augmenter() -> None:
    assert make_augmenter(AugmentConfig(), (3, 32, 32)) is None
    assert make_augmenter(AugmentConfig(translate=0, resized_crop=1.0, color_jitter=0.0, cutout=0), (1, 8, 8)) is None


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("option", ALONE)
def test_each_option_alone_changes_images_and_keeps_shape_and_range(batch: str, option: str) -> None:
    images = BATCHES[batch]()
    out = augment(images, AugmentConfig(**ALONE[option]))
    assert out.shape == images.shape
    assert out.dtype == (torch.uint8 if option in ("flip", "translate") else torch.float32)
    assert out.min() >= 0 and out.max() <= 255 and torch.isfinite(out.float()).all()
    changed = (out.float() != images.float()).flatten(1).any(1)
    assert changed.float().mean() > 0.3, f"{option} changed only {int(changed.sum())} of {len(images)} images"


@pytest.mark.parametrize("batch", BATCHES)
def test_flip_mirrors_about_half_and_leaves_the_rest(batch: str) -> None:
    images = BATCHES[batch]()
    out = augment(images, AugmentConfig(flip=True))
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all()
    assert (mirrored & ~same).any() and (same & ~mirrored).any()
    assert torch.equal(augment(out, AugmentConfig(flip=True)), images)  # the same draws mirror them back


def test_translate_is_a_shifted_copy_with_edges_repeated() -> None:
    images, shift = cats(), 4
    out = augment(images, AugmentConfig(translate=shift))
    h, w = images.shape[2:]
    padded = F.pad(images.float(), (shift,) * 4, mode="replicate")
    found = []
    for i in range(len(images)):
        offsets = [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)
                   if torch.equal(out[i].float(), padded[i, :, shift + dy:shift + dy + h, shift + dx:shift + dx + w])]
        assert offsets, f"image {i} is no shifted copy of its input"
        found.append(offsets[0])
    assert len(set(found)) > 3  # several different shifts were drawn
    assert make_augmenter(AugmentConfig(translate=0), (3, 64, 64)) is None


def test_same_seed_same_batch_other_seed_other_batch() -> None:
    images = cats()
    first, again, other = augment(images, ALL, seed=5), augment(images, ALL, seed=5), augment(images, ALL, seed=6)
    assert torch.equal(first, again)  # bit-identical
    assert not torch.equal(first, other)


def test_the_global_generator_is_not_drawn_from() -> None:
    """Dropout draws from torch's global generator: augmentation on or off must not change its masks."""
    torch.manual_seed(0)
    before = torch.get_rng_state()
    augment(cats(), ALL)
    augment(digits(), ALL)
    assert torch.equal(torch.get_rng_state(), before)


def test_resized_crop_of_the_whole_area_is_off() -> None:
    assert not AugmentConfig(resized_crop=1.0).active()
    images = cats()
    cropped = augment(images, AugmentConfig(resized_crop=0.5))
    # a crop scaled up: neighbouring pixels differ less than in the original (the same photo, zoomed in)
    def roughness(x: torch.Tensor) -> float:
        return float((x.float().diff(dim=-1).abs()).mean())

    assert roughness(cropped) < roughness(images)


@pytest.mark.parametrize("batch", BATCHES)
def test_cutout_puts_one_grey_square_per_image(batch: str) -> None:
    images, side = BATCHES[batch](), 4
    out = augment(images, AugmentConfig(cutout=side))
    grey = out == GREY  # a uint8 input never holds 127.5
    assert torch.equal(grey, grey[:, :1].expand_as(grey))  # the same square in every channel
    full = 0
    for mask in grey[:, 0]:
        rows, cols = mask.any(1), mask.any(0)
        assert torch.equal(mask, rows[:, None] & cols[None, :])  # one rectangle
        assert (side + 1) // 2 <= rows.sum() <= side and (side + 1) // 2 <= cols.sum() <= side  # at most half clipped
        full += int(rows.sum() == side and cols.sum() == side)
    assert full > 0
    assert torch.equal(out[~grey], images[~grey].float())  # the rest untouched


def test_color_jitter_keeps_grey_images_grey_and_valid() -> None:
    images = digits()
    out = augment(images, AugmentConfig(color_jitter=0.5))
    assert out.shape == (len(images), 1, 8, 8)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 255
    assert not torch.equal(out, images.float())


def test_color_jitter_moves_colour_towards_and_away_from_grey() -> None:
    images = cats()
    out = augment(images, AugmentConfig(color_jitter=0.5))
    spread = (out.max(1).values - out.min(1).values).flatten(1).mean(1)  # per image: how colourful
    original = float((images.max(1).values - images.min(1).values).float().mean())
    assert (spread < original).any() and (spread > original).any()


@pytest.mark.parametrize("batch", BATCHES)
def test_the_grid_shows_originals_then_draws(batch: str) -> None:
    images = BATCHES[batch]().numpy()
    c, h, w = images.shape[1:]
    grid = augmented_grid(images, ALL, seed=3, per_image=4)
    rows = min(8, len(images))
    assert grid.dtype == np.uint8 and grid.shape == (c, rows * (h + 2) - 2, 5 * (w + 2) - 2)
    assert np.array_equal(grid[:, :h, :w], images[0])  # the first tile is the first image as it is
    assert np.array_equal(grid, augmented_grid(images, ALL, seed=3, per_image=4))
    assert not np.array_equal(grid, augmented_grid(images, ALL, seed=4, per_image=4))


def test_training_with_augmentation_is_seeded_and_never_touches_evaluation(fast_config) -> None:
    from trainlab.checkpoint import load_checkpoint, model_from_checkpoint
    from trainlab.data import load_data
    from trainlab.evaluate import evaluate
    from trainlab.experiment import run_experiment
    from trainlab.metrics import epoch_metrics

    base = ("data.name=digits", "train.epochs=2")
    cfg = fast_config(*base, "data.augment.flip=true", "data.augment.translate=2")
    first, second = run_experiment(cfg), run_experiment(cfg)
    plain = run_experiment(fast_config(*base))

    def strip(history: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in e.items() if k not in ("epoch_seconds", "images_per_second")} for e in history]

    assert strip(first.result.history) == strip(second.result.history)  # bit-identical floats
    assert np.array_equal(first.test.probs, second.test.probs)
    assert strip(first.result.history) != strip(plain.result.history)
    # validation and test images go in as they are: the best checkpoint scores the same when evaluated again
    _, splits = load_data(cfg.data)
    best = load_checkpoint(first.result.best_checkpoint)
    model = model_from_checkpoint(best)
    again = epoch_metrics(model, splits.val_x, splits.val_y, cfg.train.eval_batch_size, "val")
    assert again["val_loss"] == best["metrics"]["val_loss"]
    tested = evaluate(model, splits.test_x, splits.test_y, splits.class_names, cfg.train.eval_batch_size)
    assert np.array_equal(tested.probs, first.test.probs)


def test_flip_at_test_time_without_flips_in_training_is_warned_about(fast_config, tiny_npz) -> None:  # noqa: ANN001
    """bench/recipe.py: `model.tta=flip` on fashion_fast, whose training never flips, lost 12 points."""
    from trainlab.experiment import run_experiment

    said: list[str] = []
    run_experiment(fast_config("data.name=npz", f"data.path={tiny_npz}", "train.epochs=1", "model.tta=flip"),
                   warn=said.append)
    assert [w for w in said if w.startswith("model.tta: flip") and "data.augment.flip: true" in w]
    said.clear()
    run_experiment(fast_config("data.name=npz", f"data.path={tiny_npz}", "train.epochs=1", "model.tta=flip",
                               "data.augment.flip=true"), warn=said.append)
    assert not [w for w in said if "model.tta" in w]
