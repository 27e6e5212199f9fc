"""Models: named CNNs and architectures declared as layer lists, built by one factory.

A named architecture is only a registered layer list, so ``small`` and a custom
network go through the same builder. Every model takes raw pixel values
(uint8 or float, 0..255) and normalises them itself with statistics stored as
buffers, which makes a checkpoint usable without any other file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from trainlab.backbones import BackboneLayer
from trainlab.catalog import ARCHITECTURES, BACKBONE_NAMES, CUSTOM, LayerDict
from trainlab.config import ModelConfig
from trainlab.errors import ConfigError


def model_names() -> tuple[str, ...]:
    """The named architectures (trainlab.catalog lists them)."""
    return tuple(sorted(ARCHITECTURES))


def resolve_layers(cfg: ModelConfig) -> list[LayerDict]:
    """The body of the network as plain dicts: the declared layers or the named ones."""
    if cfg.arch == CUSTOM:
        return [layer.model_dump() for layer in cfg.layers or ()]
    return [dict(layer) for layer in ARCHITECTURES[cfg.arch]]


class Classifier(nn.Module):
    """normalise -> body (declared layers) -> flatten -> linear head."""

    def __init__(self, layers: Sequence[LayerDict], input_shape: Sequence[int], num_outputs: int,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 channels_last: bool = True, tta: str = "none") -> None:
        super().__init__()
        channels = input_shape[0]
        mean_t = torch.tensor(list(mean) if mean is not None else [127.5] * channels, dtype=torch.float32)
        std_t = torch.tensor(list(std) if std is not None else [64.0] * channels, dtype=torch.float32)
        # pixel * scale - shift == (pixel - mean) / std, in one fused step; a backbone's three-channel statistics
        # broadcast a grey image over its three channels
        self.register_buffer("scale", (1.0 / std_t).view(1, len(std_t), 1, 1))
        self.register_buffer("shift", (mean_t / std_t).view(1, len(mean_t), 1, 1))
        self.layers = [dict(layer) for layer in layers]
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_outputs = num_outputs
        normalised = (max(channels, len(mean_t)), *self.input_shape[1:])
        self.body, features = _build_body(self.layers, normalised)
        self.head = nn.Linear(features, num_outputs)
        self.channels_last = channels_last
        self.tta = tta  # "flip": in eval mode, the logits of the image and its mirror image, averaged
        self.pretrained: dict[str, str] = {}  # a backbone's weights: where from, and the file's SHA-256 (for the record)
        self.frozen_batchnorm = False  # a backbone's BatchNorm layers stay in eval mode while training (set by training)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def backbone(self) -> BackboneLayer | None:
        """The pretrained backbone this network is built on, if any (its body's one layer)."""
        first = self.body[0] if len(self.body) else None
        return first if isinstance(first, BackboneLayer) else None

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if mode and self.frozen_batchnorm and self.backbone is not None:  # statistics kept as pretrained
            for module in self.backbone.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.tta == "flip" and not self.training:
            return flip_averaged(self._logits, pixels)
        return self._logits(pixels)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The body's output for raw uint8 pixels, flattened: what the head (and a linear probe) sees."""
        x = pixels.float() * self.scale - self.shift
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.body(x).flatten(1)

    def _logits(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixels))


def create_model(cfg: ModelConfig, input_shape: Sequence[int], num_outputs: int,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Classifier:
    """Build the configured network for images of ``input_shape`` (C, H, W)."""
    return Classifier(resolve_layers(cfg), input_shape, num_outputs, mean, std, cfg.channels_last, cfg.tta)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _build_body(layers: Sequence[LayerDict], input_shape: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    """Instantiate layer by layer, pushing a dummy image through to learn each input size."""
    modules: list[nn.Module] = []
    x = torch.zeros(1, *input_shape)
    for i, spec in enumerate(layers):
        module = _make_layer(spec, tuple(x.shape[1:]))
        module.eval()  # BatchNorm cannot run in train mode on the single dummy image
        try:
            with torch.no_grad():
                x = module(x)
        except RuntimeError as exc:
            raise ConfigError(
                f"model layer {i} ({spec['type']}) cannot take an input of shape {tuple(x.shape[1:])}: "
                f"{str(exc).splitlines()[0]}; remove it or use larger images"
            ) from None
        if x.numel() == 0:
            raise ConfigError(f"model layer {i} ({spec['type']}) shrinks the image to nothing; remove it or use larger images")
        modules.append(module)
    return nn.Sequential(*modules), int(x[0].numel())


def _make_layer(spec: LayerDict, shape: tuple[int, ...]) -> nn.Module:
    kind = spec["type"]
    if kind in BACKBONE_NAMES:
        if shape[0] != 3:
            raise ConfigError(f"{kind} takes RGB images but these have {shape[0]} channel(s); set data.channels: 3")
        return BackboneLayer(kind)
    spatial = len(shape) == 3
    if kind == "conv":
        if not spatial:
            raise ConfigError("a conv layer follows a flatten or linear layer; convolutions need image-shaped input")
        padding = spec.get("padding", "same")
        if padding == "same":
            padding = spec.get("kernel", 3) // 2
        return nn.Conv2d(shape[0], spec["out"], spec.get("kernel", 3), stride=spec.get("stride", 1), padding=padding)
    if kind == "linear":
        features = int(torch.tensor(shape).prod())
        return nn.Sequential(nn.Flatten(), nn.Linear(features, spec["out"])) if spatial else nn.Linear(features, spec["out"])
    if kind == "batchnorm":
        return nn.BatchNorm2d(shape[0]) if spatial else nn.BatchNorm1d(shape[0])
    if kind in ("maxpool", "avgpool"):
        if not spatial:
            raise ConfigError(f"a {kind} layer follows a flatten or linear layer; pooling needs image-shaped input")
        cls = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
        return cls(spec.get("kernel", 2))
    if kind == "global_avgpool":
        return nn.AdaptiveAvgPool2d(1) if spatial else nn.Identity()
    if kind == "dropout":
        return nn.Dropout(spec.get("p", 0.5))
    if kind == "flatten":
        return nn.Flatten()
    if kind == "relu":
        return nn.ReLU(inplace=True)  # no layer type here needs its output kept for backward
    if kind == "gelu":
        return nn.GELU()
    raise ConfigError(f"layer type {kind!r} is unknown")


def flip_averaged(logits: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
    """model.tta: flip: the mean of the logits of each image and its left-right mirror image (one forward pass)."""
    both = logits(torch.cat([pixels, pixels.flip(3)]))
    return (both[:len(pixels)] + both[len(pixels):]) / 2


class FlipAveraged(nn.Module):
    """A network without test-time flips (an int8 copy) evaluated as ``flip_averaged`` does."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return flip_averaged(self.network, pixels)


class ProbeView(nn.Module):
    """A classifier's head alone, trained on the pooled features its frozen body computed once (a linear probe).

    Its parameters are the head's; its state dict is the whole classifier's, so the checkpoints the training loop
    writes hold the complete model, and ``--resume`` loads one back."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.head = classifier.head
        object.__setattr__(self, "classifier", classifier)  # not a submodule: its body is not trained

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def state_dict(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return self.classifier.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[no-untyped-def]
        return self.classifier.load_state_dict(state_dict, strict=strict, assign=assign)
