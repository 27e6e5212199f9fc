from __future__ import annotations

import pytest
import torch

from trainlab.catalog import BACKBONE_NAMES
from trainlab.config import ModelConfig
from trainlab.errors import ConfigError
from trainlab.models import create_model, model_names

CUSTOM = ModelConfig(layers=[{"type": "conv", "out": 8, "kernel": 5, "stride": 2}, {"type": "gelu"},
                             {"type": "avgpool"}, {"type": "linear", "out": 16}, {"type": "dropout", "p": 0.1},
                             {"type": "batchnorm"}, {"type": "relu"}])
ALL_MODELS = [ModelConfig(arch=name) for name in model_names()] + [CUSTOM]


@pytest.mark.parametrize("cfg", ALL_MODELS, ids=lambda c: c.arch)
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)], ids=str)
def test_every_model_outputs_logits_and_trains_every_parameter(cfg: ModelConfig, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    if cfg.arch in BACKBONE_NAMES and shape[0] != 3:
        with pytest.raises(ConfigError, match=f"{cfg.arch} takes RGB images but these have 1 channel"):
            create_model(cfg, shape, num_outputs=10)
        return
    model = create_model(cfg, shape, num_outputs=10)
    pixels = torch.randint(0, 256, (4, *shape), dtype=torch.uint8)
    logits = model(pixels)
    assert logits.shape == (4, 10)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_registry_names() -> None:
    assert set(model_names()) == {"small", "fast", "medium", "large", "photo", "cifar", "efficientnet_lite0", "resnet18"}


def test_model_normalises_its_own_input() -> None:
    model = create_model(ModelConfig(), (1, 8, 8), 3, mean=[100.0], std=[50.0])
    pixels = torch.full((1, 1, 8, 8), 150, dtype=torch.uint8)
    # (150 - 100) / 50 == 1 for every pixel once inside the model
    assert torch.allclose(pixels.float() * model.scale - model.shift, torch.ones(1, 1, 8, 8))


def test_layers_too_deep_for_the_image_fail_clearly() -> None:
    cfg = ModelConfig(layers=[{"type": "maxpool", "kernel": 2}] * 4)
    with pytest.raises(ConfigError, match=r"model layer 3 \(maxpool\) cannot take an input of shape \(1, 1, 1\)"):
        create_model(cfg, (1, 8, 8), 10)


def test_conv_after_flatten_fails_clearly() -> None:
    with pytest.raises(ConfigError, match="conv layer follows a flatten"):
        create_model(ModelConfig(layers=[{"type": "flatten"}, {"type": "conv", "out": 4}]), (1, 8, 8), 10)
