"""int8 inference: post-training static quantization of a trained model, for `--int8` on predict and test.

A trained fp32 model is calibrated on the first CALIBRATION_IMAGES training images (the
same images every time, so the int8 model is reproducible), then its convolutions and linear
layers run on int8 kernels: 2-3x the fp32 forward pass on a CPU with VNNI, little more than
fp32 without it. Labels agree with fp32 on about 99.5% of Fashion-MNIST test images (docs/speed.md); the probabilities differ, which
is why fp32 stays the default and the record says which precision produced a number.

torch.ao.quantization is the only int8 path for convolutions that needs no torch.compile
(its successor, torchao, lowers int8 convolutions through inductor: a compile longer than
a test-set pass). It warns that it is deprecated; torch is pinned, and the tests run it.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainlab.errors import ConfigError
from trainlab.provenance import cpu_info, has_vnni

CALIBRATION_IMAGES = 1024
ENGINE = "x86"


@dataclass(frozen=True)
class Quantized:
    model: nn.Module
    seconds: float  # tracing + calibration + conversion
    calibration_images: int


def quantize_int8(model: nn.Module, calibration: np.ndarray | torch.Tensor, batch_size: int = 256) -> Quantized:
    """An int8 copy of ``model`` (left untouched), its activation ranges observed on ``calibration`` images."""
    if ENGINE not in torch.backends.quantized.supported_engines:
        raise ConfigError(f"--int8 needs torch's {ENGINE!r} quantized engine, but this torch offers "
                          f"{torch.backends.quantized.supported_engines}; run without --int8")
    if len(calibration) == 0:
        raise ConfigError("--int8 needs training images to calibrate on, but the model's dataset has none")
    started = time.perf_counter()
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    from torch.fx import config as fx_config

    torch.backends.quantized.engine = ENGINE
    # min/max activation ranges: as accurate as the default histograms here, and 10x faster to observe
    qconfig = QConfig(activation=MinMaxObserver.with_args(dtype=torch.quint8),
                      weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
    mapping = get_default_qconfig_mapping(ENGINE).set_global(qconfig)
    pixels = torch.as_tensor(calibration)
    # FX records a stack trace per node by default, which imports torch._dynamo: 1.5 s for nothing here
    emit_traces = fx_config.do_not_emit_stack_traces
    fx_config.do_not_emit_stack_traces = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(torch\.ao\.quantization|quantized tensor creation).*deprecated")
            network = copy.deepcopy(model).eval()
            tta = getattr(network, "tta", "none")
            network.tta = "none"  # traced without the flip (FX would quantize its uint8 concatenation); wrapped below
            observed = prepare_fx(network, mapping, (pixels[:1],))
            with torch.inference_mode():
                for i in range(0, len(pixels), batch_size):
                    observed(pixels[i:i + batch_size])
            quantized = convert_fx(observed)
            if tta == "flip":
                from trainlab.models import FlipAveraged

                quantized = FlipAveraged(quantized)
    finally:
        fx_config.do_not_emit_stack_traces = emit_traces
    return Quantized(quantized, time.perf_counter() - started, len(pixels))


def label_agreement(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Share of rows whose most likely class is the same in two sets of scores."""
    return float((np.asarray(a).argmax(1) == np.asarray(b).argmax(1)).mean()) if len(a) else float("nan")


def int8_slower_note(int8_images_per_second: float, fp32_images_per_second: float) -> str | None:
    """A note when int8 did not pay off on this CPU (it needs VNNI; AVX2-only CPUs run it at fp32 speed or less)."""

    ratio = int8_images_per_second / fp32_images_per_second if fp32_images_per_second else 0.0
    if ratio >= 1.2:
        return None
    cpu = cpu_info()
    why = ("it has no VNNI int8 instructions" if not has_vnni(cpu) else
           "the model may be too small to gain, or (a pretrained backbone) its convolutions are not fused for int8")
    return (f"--int8 ran at {ratio:.1f}x the fp32 speed on this CPU ({cpu['cpu_model']}, "
            f"{cpu['cpu_capability']}): {why}; fp32 is as fast here and exact")


def int8_cpu_note() -> str | None:
    """Before quantizing for `predict`: warn when this CPU lacks the instructions that make int8 fast."""

    cpu = cpu_info()
    if has_vnni(cpu):
        return None
    return (f"this CPU ({cpu['cpu_model']}, {cpu['cpu_capability']}) has no VNNI int8 instructions: --int8 is "
            "unlikely to be faster than fp32 here, and its probabilities differ slightly")


def int8_backbone_note(model: nn.Module) -> str | None:
    """Before quantizing a model on EfficientNet-Lite0: its "SAME"-padded convolutions do not fuse with their
    BatchNorms (the published layout keeps them apart), so int8 runs several times slower than fp32."""
    from trainlab.backbones import BACKBONES

    backbone = getattr(model, "backbone", None)
    if backbone is None or BACKBONES[backbone.name].int8_fused:
        return None
    return (f"--int8 on {backbone.name} runs its padded convolutions unfused, several times slower than fp32 "
            "(bench/transfer.py), with slightly different probabilities; drop --int8")
