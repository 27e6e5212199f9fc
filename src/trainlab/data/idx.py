"""MNIST and Fashion-MNIST: four IDX files each, read with numpy."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from trainlab.config import DataConfig
from trainlab.data.dataset import Dataset, register_dataset
from trainlab.data.fetch import DownloadProgress, RemoteFile, Source, fetch_source
from trainlab.errors import CorruptDataError

# IDX type codes -> numpy dtypes (big-endian), from the format's definition
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

MNIST = Source(
    dataset="mnist",
    files=(
        RemoteFile("train-images-idx3-ubyte.gz",
                   "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                   "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        RemoteFile("train-labels-idx1-ubyte.gz",
                   "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                   "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        RemoteFile("t10k-images-idx3-ubyte.gz",
                   "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                   "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        RemoteFile("t10k-labels-idx1-ubyte.gz",
                   "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                   "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
)

FASHION_MNIST = Source(
    dataset="fashion-mnist",
    files=(
        RemoteFile("train-images-idx3-ubyte.gz",
                   "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                   "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        RemoteFile("train-labels-idx1-ubyte.gz",
                   "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                   "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        RemoteFile("t10k-images-idx3-ubyte.gz",
                   "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                   "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        RemoteFile("t10k-labels-idx1-ubyte.gz",
                   "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                   "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    # Debian's dataset-fashion-mnist package (`dpkg -L dataset-fashion-mnist`)
    system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
)

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def parse_idx(content: bytes, name: str) -> np.ndarray:
    """Decode one IDX file (already decompressed); errors name the file."""
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] not in _IDX_DTYPES:
        raise CorruptDataError(f"{name!r} is not an IDX file (bad magic number {content[:4].hex()!r})")
    ndim = content[3]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise CorruptDataError(f"{name!r} is truncated inside its IDX header")
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[content[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(content) != expected:
        raise CorruptDataError(
            f"{name!r} holds {len(content)} bytes but its header {shape} needs {expected}; it is truncated or damaged"
        )
    return np.frombuffer(content, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx_file(path: Path) -> np.ndarray:
    """An IDX file from disk, gzip or not (used by `trainlab predict`)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise CorruptDataError(f"{str(path)!r} is not a readable gzip file ({exc})") from None
    return parse_idx(raw, str(path))


def load_idx_source(source: Source, class_names: tuple[str, ...], cfg: DataConfig,
                    progress: DownloadProgress | None) -> Dataset:
    files = fetch_source(source, cfg.data_dir, download=cfg.download, mirror=cfg.mirror, progress=progress)
    train_img, train_lbl, test_img, test_lbl = (files[r.name] for r in source.files)
    arrays = [parse_idx(f.content, str(f.path)) for f in (train_img, train_lbl, test_img, test_lbl)]
    for images, labels, img_file in ((arrays[0], arrays[1], train_img), (arrays[2], arrays[3], test_img)):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise CorruptDataError(
                f"{str(img_file.path)!r}: images {images.shape} do not pair with labels {labels.shape}"
            )
    return Dataset(
        name=source.dataset,
        class_names=class_names,
        train_x=arrays[0][:, None].astype(np.uint8),
        train_y=arrays[1].astype(np.int64),
        test_x=arrays[2][:, None].astype(np.uint8),
        test_y=arrays[3].astype(np.int64),
        files={f.path.name: f.sha256 for f in files.values()},
        location=str(train_img.path.parent),
    )


@register_dataset("mnist")
def load_mnist(cfg: DataConfig, progress: DownloadProgress | None = None) -> Dataset:
    return load_idx_source(MNIST, MNIST_CLASSES, cfg, progress)


@register_dataset("fashion-mnist")
def load_fashion_mnist(cfg: DataConfig, progress: DownloadProgress | None = None) -> Dataset:
    return load_idx_source(FASHION_MNIST, FASHION_CLASSES, cfg, progress)
