"""What a config can name, listed once: the datasets and the named architectures.

The config's validation is built from these lists (an unknown name is refused with the choices), each dataset
has its loader in ``trainlab.data`` (registering a loader for a name not listed here fails at import), and
``trainlab.models`` builds every named architecture from its layer list here. Adding a model is one entry
below; adding a dataset is one entry below and its loader.
"""

from __future__ import annotations

from typing import Any

LayerDict = dict[str, Any]

DATASETS: dict[str, str] = {
    "digits": "scikit-learn's 8x8 handwritten digits, bundled, offline",
    "mnist": "MNIST, IDX files (downloaded, SHA-256 checked)",
    "fashion-mnist": "Fashion-MNIST, IDX files (Debian's dataset-fashion-mnist, or downloaded)",
    "cifar10": "CIFAR-10, the python-pickle archive (downloaded, SHA-256 checked)",
    "imagefolder": "a folder of class folders of images (train/, val/, test/)",
    "npz": "a NumPy .npz file with x, y and optionally x_test, y_test, class_names",
}


def _conv_block(out: int) -> list[LayerDict]:
    return [{"type": "conv", "out": out, "kernel": 3}, {"type": "batchnorm"}, {"type": "relu"}]


def _airbench_stage(out: int) -> list[LayerDict]:
    return [{"type": "conv", "out": out, "kernel": 3}, {"type": "maxpool", "kernel": 2}, {"type": "batchnorm"},
            {"type": "gelu"}, {"type": "conv", "out": out, "kernel": 3}, {"type": "batchnorm"}, {"type": "gelu"}]


# each a layer list; the classifier head (a linear layer, one output per class) is appended when built
ARCHITECTURES: dict[str, tuple[LayerDict, ...]] = {
    # ~21k parameters on 28x28 (mostly the head): seconds per epoch on a laptop CPU
    "small": (*_conv_block(16), {"type": "maxpool", "kernel": 2},
              *_conv_block(32), {"type": "maxpool", "kernel": 2}),
    # pooled before BatchNorm and ReLU, so those run on a quarter of the pixels: the fastest
    # to 91% Fashion-MNIST test accuracy on a 2-core CPU (configs/fashion_fast.yaml, docs/speed.md)
    "fast": ({"type": "conv", "out": 32, "kernel": 3}, {"type": "maxpool", "kernel": 2},
             {"type": "batchnorm"}, {"type": "relu"},
             {"type": "conv", "out": 64, "kernel": 3}, {"type": "maxpool", "kernel": 2},
             {"type": "batchnorm"}, {"type": "relu"}),
    # the shape of the classic PyTorch MNIST example, with BatchNorm
    "medium": (*_conv_block(32), *_conv_block(32), {"type": "maxpool", "kernel": 2},
               *_conv_block(64), *_conv_block(64), {"type": "maxpool", "kernel": 2},
               {"type": "flatten"}, {"type": "dropout", "p": 0.25},
               {"type": "linear", "out": 128}, {"type": "relu"}, {"type": "dropout", "p": 0.5}),
    "large": (*_conv_block(64), *_conv_block(64), {"type": "maxpool", "kernel": 2},
              *_conv_block(128), *_conv_block(128), {"type": "maxpool", "kernel": 2},
              *_conv_block(256), {"type": "global_avgpool"}, {"type": "dropout", "p": 0.3}),
    # photos from scratch (configs/photos.yaml): four conv stages, the last pooled over the whole image, so any
    # image size works and the head sees what is in the picture, not where; ~390k parameters
    "photo": (*_conv_block(32), {"type": "maxpool", "kernel": 2},
              *_conv_block(64), {"type": "maxpool", "kernel": 2},
              *_conv_block(128), {"type": "maxpool", "kernel": 2},
              *_conv_block(256), {"type": "global_avgpool"}),
    # CIFAR-10 on a CPU (configs/cifar10_fast.yaml), after airbench: a stem, then three stages of
    # conv-pool-BatchNorm-GELU + conv-BatchNorm-GELU (pooled before BatchNorm, as in "fast"), 32 -> 16 -> 8 -> 4 px
    "cifar": ({"type": "conv", "out": 32, "kernel": 3}, {"type": "batchnorm"}, {"type": "gelu"},
              *_airbench_stage(64), *_airbench_stage(128), *_airbench_stage(128),
              {"type": "global_avgpool"}),
    # pretrained ImageNet backbones (trainlab.backbones), their weights from files (model.pretrained); the body is
    # the backbone's pooled features
    "efficientnet_lite0": ({"type": "efficientnet_lite0"},),
    "resnet18": ({"type": "resnet18"},),
}
BACKBONE_NAMES = ("efficientnet_lite0", "resnet18")
# what train.last_n_blocks counts per backbone: the stages a partial fine-tune unfreezes from the end
# (Lite0: the stem, 16 MBConv blocks, the 1x1 head; ResNet-18: the stem, 8 basic blocks)
BACKBONE_BLOCKS = {"efficientnet_lite0": 18, "resnet18": 9}
CUSTOM = "custom"  # model.arch for a network declared in model.layers

DATASET_NAMES = tuple(DATASETS)
ARCH_NAMES = (*ARCHITECTURES, CUSTOM)
