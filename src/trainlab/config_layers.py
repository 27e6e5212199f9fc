"""The layers a custom model declares in ``model.layers``, validated (pydantic): one model per layer type, told
apart by ``type``. models.py builds the network from them."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """A part of the config: unknown keys are refused, and it cannot change once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConvLayer(Section):
    type: Literal["conv"]
    out: int = Field(gt=0, description="Output channels.")
    kernel: int = Field(3, gt=0, description="Kernel size in pixels.")
    stride: int = Field(1, gt=0)
    padding: int | Literal["same"] = Field("same", description="Pixels of zero padding, or 'same'.")


class LinearLayer(Section):
    type: Literal["linear"]
    out: int = Field(gt=0, description="Output features.")


class PoolLayer(Section):
    type: Literal["maxpool", "avgpool"]
    kernel: int = Field(2, gt=0, description="Window (and stride) in pixels.")


class DropoutLayer(Section):
    type: Literal["dropout"]
    p: float = Field(0.5, ge=0.0, lt=1.0, description="Probability of zeroing an activation.")


class PlainLayer(Section):
    type: Literal["relu", "gelu", "batchnorm", "flatten", "global_avgpool"]


LayerSpec = Annotated[
    ConvLayer | LinearLayer | PoolLayer | DropoutLayer | PlainLayer, Field(discriminator="type")
]


LAYER_TYPES = frozenset(
    t for cls in (ConvLayer, LinearLayer, PoolLayer, DropoutLayer, PlainLayer)
    for t in get_args(cls.model_fields["type"].annotation)
)
