"""EfficientNet-Lite0, defined here so the published ImageNet weights load strictly (no missing or unexpected key).

The layout and names follow the reference implementation (``efficientnet-lite-pytorch``, Apache-2.0, after the
TensorFlow original): a stride-2 stem, 16 inverted-residual blocks (MBConv) without squeeze-and-excitation, a
1x1 head to 1,280 channels, ReLU6 throughout, BatchNorm with eps 1e-3, and TensorFlow's "SAME" padding
(computed from the input's size, so any image size works). Inputs are normalised with mean 0.5, std 0.5.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's 0.99 decay is PyTorch's momentum 0.01
FEATURES = 1280  # the head's channels: what the pooled features hold
# per stage: repeats, kernel, stride, expansion, input channels, output channels (efficientnet_lite_builder.py)
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))


class SameConv2d(nn.Conv2d):
    """A convolution padded as TensorFlow's "SAME": output size ceil(input / stride), the extra pixel at the end.

    The padding depends on the input's size. The last size seen is kept, so that int8 quantization, which traces
    the model symbolically (no sizes), pads as for the model's input size (the one its build pushed through)."""

    traced_pads: list[int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.fx.Proxy):
            if self.traced_pads is None:
                raise RuntimeError("SameConv2d is traced before it saw an input: run one image through it first")
            pads = self.traced_pads
        else:
            pads = []
            for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride),
                                  strict=True):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            self.traced_pads = pads
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, (0, 0), self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Expand (1x1), depthwise (k x k, stride), project (1x1); a residual when the shape is kept."""

    def __init__(self, kernel: int, stride: int, expand: int, inp: int, out: int) -> None:
        super().__init__()
        mid = inp * expand
        if expand != 1:
            self._expand_conv = SameConv2d(inp, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out, 1, bias=False)
        self._bn2 = _bn(out)
        self.expand = expand != 1
        self.residual = stride == 1 and inp == out

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._expand_conv(inputs))) if self.expand else inputs
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.residual else x


class EfficientNetLite0(nn.Module):
    """The backbone: normalised images in, (N, 1,280) pooled features out; ``classes`` adds the ImageNet-style
    ``_fc`` layer, so the published file (its ``_fc`` included) loads strictly."""

    def __init__(self, classes: int | None = None, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, inp, out in LITE0_STAGES:
            blocks.append(MBConv(kernel, stride, expand, inp, out))
            blocks += [MBConv(kernel, 1, expand, out, out) for _ in range(repeats - 1)]
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, FEATURES, 1, bias=False)
        self._bn1 = _bn(FEATURES)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURES, classes) if classes else None

    def blocks(self) -> list[nn.Module]:
        """The stages a partial fine-tune unfreezes from the end: stem, the 16 MBConv blocks, the 1x1 head."""
        return [nn.ModuleList([self._conv_stem, self._bn0]), *self._blocks,
                nn.ModuleList([self._conv_head, self._bn1])]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x)
        return self._fc(self._dropout(pooled)) if self._fc is not None else pooled
