from __future__ import annotations

import gzip
import io
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, IdxSet, Server, idx_bytes, make_images
from PIL import Image

from trainlab.config import DataConfig, load_config
from trainlab.data import cifar10 as cifar_module
from trainlab.data import create_dataset, dataset_names, read_idx_file, split_dataset
from trainlab.data import idx as idx_module
from trainlab.data.fetch import RemoteFile, download_file, fetch_source, sha256_bytes
from trainlab.data.idx import FASHION_CLASSES, parse_idx
from trainlab.errors import ConfigError, CorruptDataError, DataError, DataNotFoundError, DownloadError


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# -- registry and bundled data ---------------------------------------------------------------


def test_every_dataset_the_config_accepts_has_a_loader_and_no_loader_is_unlisted() -> None:
    from trainlab.catalog import DATASET_NAMES
    from trainlab.data.dataset import register_dataset

    assert dataset_names() == tuple(sorted(DATASET_NAMES))
    with pytest.raises(ValueError, match="not listed in trainlab.catalog.DATASETS"):
        register_dataset("svhn")


def test_digits_loads_offline_with_fingerprint_and_stable_split() -> None:
    ds = create_dataset(DataConfig())
    assert ds.train_x.dtype == np.uint8 and ds.train_x.shape[1:] == (1, 8, 8)
    assert len(ds.train_y) + len(ds.test_y) == 1797
    assert ds.train_x.max() == 255
    assert ds.class_names == tuple(str(d) for d in range(10))
    assert len(ds.files["digits.csv.gz"]) == 64
    again = create_dataset(DataConfig())
    assert np.array_equal(ds.test_y, again.test_y)  # the held-out test split does not move


def test_validation_split_is_stratified_and_disjoint() -> None:
    ds = create_dataset(DataConfig())
    splits = split_dataset(ds, 0.2, seed=0)
    assert len(splits.train_y) + len(splits.val_y) == len(ds.train_y)
    val_share = np.bincount(splits.val_y, minlength=10) / np.bincount(ds.train_y, minlength=10)
    assert np.allclose(val_share, 0.2, atol=0.03)


# -- IDX format -----------------------------------------------------------------------------


def test_idx_roundtrip_and_header_checks(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(arr), "x"), arr)
    with pytest.raises(CorruptDataError, match=r"'short' holds 30 bytes but its header \(2, 3, 4\) needs 40"):
        parse_idx(idx_bytes(arr)[:30], "short")
    with pytest.raises(CorruptDataError, match="'junk' is not an IDX file"):
        parse_idx(b"PK\x03\x04rest", "junk")
    path = tmp_path / "imgs-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(arr)))
    assert np.array_equal(read_idx_file(path), arr)


def _mnist_cfg(tmp_path: Path, **kw: object) -> DataConfig:
    return DataConfig(name="mnist", data_dir=tmp_path / "data", **kw)


def test_mnist_from_data_dir_verified(tmp_path: Path, idx_set: IdxSet, source_for, monkeypatch) -> None:
    monkeypatch.setattr(idx_module, "MNIST", source_for("mnist"))
    target = tmp_path / "data" / "mnist"
    target.mkdir(parents=True)
    for name, blob in idx_set.files.items():
        (target / name).write_bytes(blob)
    ds = create_dataset(_mnist_cfg(tmp_path, download=False))
    assert ds.train_x.shape == (120, 1, 28, 28) and ds.test_x.shape == (40, 1, 28, 28)
    assert set(ds.files.values()) == {idx_set.content_sha(n) for n in idx_set.files}


def test_recompressed_and_uncompressed_copies_pass_by_content_hash(tmp_path, idx_set, source_for, monkeypatch) -> None:
    """Debian ships Fashion-MNIST recompressed: other .gz bytes, same content."""
    system = tmp_path / "usr-share"
    system.mkdir()
    names = list(idx_set.files)
    for name in names[:2]:
        (system / name).write_bytes(gzip.compress(gzip.decompress(idx_set.files[name]), mtime=12345))
    for name in names[2:]:
        (system / name.removesuffix(".gz")).write_bytes(gzip.decompress(idx_set.files[name]))
    monkeypatch.setattr(idx_module, "FASHION_MNIST", source_for("fashion-mnist", system_dirs=(system,)))
    ds = create_dataset(DataConfig(name="fashion-mnist", data_dir=tmp_path / "data", download=False))
    assert ds.class_names == FASHION_CLASSES
    assert ds.location == str(system)


def test_missing_files_without_download_say_where_they_looked(tmp_path, source_for, monkeypatch) -> None:
    monkeypatch.setattr(idx_module, "MNIST", source_for("mnist"))
    with pytest.raises(DataNotFoundError) as err:
        create_dataset(_mnist_cfg(tmp_path, download=False))
    assert "file 'train-images-idx3-ubyte.gz' not found in" in str(err.value)
    assert "trainlab download --dataset mnist" in str(err.value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[: len(b) // 2], "is not a readable gzip file"),  # truncated download
        (lambda b: gzip.compress(gzip.decompress(b)[:-7]), "has SHA-256"),  # truncated content
        (lambda b: gzip.compress(gzip.decompress(b)[::-1]), "has SHA-256"),  # other data
    ],
    ids=["truncated-gzip", "truncated-content", "different-data"],
)
def test_corrupt_local_file_names_the_file(tmp_path, idx_set, source_for, monkeypatch, damage, message) -> None:
    monkeypatch.setattr(idx_module, "MNIST", source_for("mnist"))
    target = tmp_path / "data" / "mnist"
    target.mkdir(parents=True)
    for name, blob in idx_set.files.items():
        (target / name).write_bytes(damage(blob) if name.startswith("t10k-images") else blob)
    with pytest.raises(CorruptDataError) as err:
        create_dataset(_mnist_cfg(tmp_path, download=False))
    assert str(target / "t10k-images-idx3-ubyte.gz") in str(err.value)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


# -- downloads ------------------------------------------------------------------------------


def test_download_from_server_is_verified_and_complete(tmp_path, idx_set, http_server: Server, source_for,
                                                       monkeypatch) -> None:
    monkeypatch.setattr(idx_module, "MNIST", source_for("mnist", mirrors=(http_server.url + "/ok/",)))
    seen: list[tuple[str, int]] = []
    ds = create_dataset(_mnist_cfg(tmp_path), progress=lambda name, done, total: seen.append((name, done)))
    assert len(ds.train_y) == 120
    cached = files_under(tmp_path / "data")
    assert [p.name for p in cached] == sorted(idx_set.files)
    assert all(sha256_bytes(p.read_bytes()) == idx_set.sha(p.name) for p in cached)
    assert {name for name, _ in seen} == set(idx_set.files)
    # a second load finds the cache and asks the server nothing
    before = len(http_server.requests)
    create_dataset(_mnist_cfg(tmp_path))
    assert len(http_server.requests) == before


@pytest.mark.parametrize("mode", ["error", "truncate", "wrong"])
def test_failed_download_leaves_nothing(tmp_path, idx_set, http_server: Server, mode: str) -> None:
    name = "train-labels-idx1-ubyte.gz"
    remote = RemoteFile(name, idx_set.sha(name))
    cache = tmp_path / "data" / "mnist"
    with pytest.raises(DownloadError) as err:
        download_file(remote, (f"{http_server.url}/{mode}/",), cache)
    expected = {"error": "HTTP 500", "truncate": "ended after", "wrong": "sent a file with SHA-256"}[mode]
    assert expected in str(err.value)
    assert "nothing was written" in str(err.value)
    assert files_under(tmp_path / "data") == []


def test_download_falls_back_to_the_next_mirror(tmp_path, idx_set, http_server: Server) -> None:
    name = "t10k-labels-idx1-ubyte.gz"
    path = download_file(RemoteFile(name, idx_set.sha(name)),
                         (f"{http_server.url}/error/", f"{http_server.url}/ok/"), tmp_path / "cache")
    assert path.read_bytes() == idx_set.files[name]
    assert [r.split("/")[1] for r in http_server.requests] == ["error", "ok"]


def test_stale_partial_download_is_cleared(tmp_path, idx_set, http_server: Server) -> None:
    name = "t10k-labels-idx1-ubyte.gz"
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f".{name}.999.part").write_bytes(b"half")  # what a killed download leaves
    download_file(RemoteFile(name, idx_set.sha(name)), (f"{http_server.url}/ok/",), cache)
    assert [p.name for p in files_under(cache)] == [name]


def test_configured_mirror_is_tried_first(tmp_path, idx_set, http_server: Server, source_for) -> None:
    source = source_for("mnist", mirrors=("http://127.0.0.1:9/unreachable/",))
    files = fetch_source(source, tmp_path / "data", download=True, mirror=http_server.url + "/ok/")
    assert len(files) == 4
    assert all(r.startswith("/ok/") for r in http_server.requests)


# -- CIFAR-10, image folders, npz -----------------------------------------------------------


def _cifar_archive(path: Path, marked: bool = False) -> bytes:
    """The official layout with random images; ``marked``: the first training image has a red top row and a
    blue bottom-right pixel."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name: str, obj: object) -> None:
            blob = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))

        for b in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            rows = rng.integers(0, 256, (20, 3072), dtype=np.uint8)
            if marked and b == "data_batch_1":
                rows[0] = 0
                rows[0, :32] = 255  # red channel (the first 1,024 values), top row
                rows[0, 3071] = 255  # blue channel, last pixel
            add(b, {b"data": rows, b"labels": list(rng.integers(0, 10, 20))})
        add("batches.meta", {b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer",
                                                                     "dog", "frog", "horse", "ship", "truck")]})
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_cifar10_archive(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    blob = _cifar_archive(folder / "cifar-10-python.tar.gz")
    source = cifar_module.CIFAR10
    monkeypatch.setattr(cifar_module, "CIFAR10", type(source)(
        source.dataset, (RemoteFile("cifar-10-python.tar.gz", sha256_bytes(blob)),), ()))
    ds = create_dataset(DataConfig(name="cifar10", data_dir=tmp_path / "data", download=False))
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)
    assert ds.class_names[:2] == ("airplane", "automobile")


def test_the_cifar10_fast_preset_trains_on_the_official_format(tmp_path: Path, monkeypatch) -> None:
    """The real loader and the preset together, on a small archive in the official layout (rows of 1,024 red,
    then green, then blue values, row-major): the pixels land where the format says, and the recipe runs."""
    from trainlab.config import load_config
    from trainlab.experiment import run_experiment

    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    blob = _cifar_archive(folder / "cifar-10-python.tar.gz", marked=True)
    source = cifar_module.CIFAR10
    monkeypatch.setattr(cifar_module, "CIFAR10", type(source)(
        source.dataset, (RemoteFile("cifar-10-python.tar.gz", sha256_bytes(blob)),), ()))
    cfg = load_config(REPO / "configs" / "cifar10_fast.yaml", [
        f"data.data_dir={tmp_path / 'data'}", "data.download=false", "train.epochs=2", "train.batch_size=32",
        "data.val_fraction=0.2", "tracking.trackers=[]", "report=false", "threads=1"])
    ds = create_dataset(cfg.data)
    assert ds.train_x[0, 0, 0].tolist() == [255] * 32 and ds.train_x[0, 1:, 0].max() == 0  # a red top row
    assert ds.train_x[0, 2, 31, 31] == 255  # the bottom-right pixel is blue
    outcome = run_experiment(cfg)
    assert outcome.result.history[-1]["images_per_second"] > 0 and len(outcome.result.history) == 2
    assert outcome.config.model.tta == "flip" and outcome.config.data.augment.flip


def test_cifar10_wrong_archive_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    _cifar_archive(folder / "cifar-10-python.tar.gz")  # not the published bytes
    with pytest.raises(CorruptDataError, match="cifar-10-python.tar.gz' has SHA-256"):
        create_dataset(DataConfig(name="cifar10", data_dir=tmp_path / "data", download=False))


def _write_pngs(root: Path, x: np.ndarray, y: np.ndarray, names: list[str], rgb: bool = False) -> None:
    for i, (img, label) in enumerate(zip(x, y)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        pil = Image.fromarray(img)
        (pil.convert("RGB") if rgb else pil).save(folder / f"{i}.png")


def test_imagefolder_with_train_and_test_folders(tmp_path: Path) -> None:
    names = ["cat", "dog", "emu"]
    x, y = make_images(10, classes=3, size=20)
    _write_pngs(tmp_path / "imgs" / "train", x, y, names)
    xt, yt = make_images(3, classes=3, size=20, seed=1)
    _write_pngs(tmp_path / "imgs" / "test", xt, yt, names)
    ds = create_dataset(DataConfig(name="imagefolder", path=tmp_path / "imgs", image_size=(16, 12)))
    assert ds.class_names == ("cat", "dog", "emu")
    assert ds.train_x.shape == (30, 1, 16, 12) and ds.test_x.shape == (9, 1, 16, 12)
    assert np.bincount(ds.test_y).tolist() == [3, 3, 3]


def test_imagefolder_single_root_rgb_skips_bad_files_unless_strict(tmp_path: Path) -> None:
    x, y = make_images(10, classes=2)
    _write_pngs(tmp_path / "imgs", x, y, ["a", "b"], rgb=True)
    ds = create_dataset(DataConfig(name="imagefolder", path=tmp_path / "imgs"))
    assert ds.train_x.shape[1:] == (3, 28, 28) and len(ds.train_y) + len(ds.test_y) == 20 and ds.skipped == ()
    (tmp_path / "imgs" / "a" / "broken.png").write_bytes(b"not a png")  # a truncated download
    (tmp_path / "imgs" / "b" / "notes.txt").write_text("labelled by Ann")  # junk beside the images
    ds = create_dataset(DataConfig(name="imagefolder", path=tmp_path / "imgs"))
    assert len(ds.train_y) + len(ds.test_y) == 20  # every good image, and only those
    assert sorted(ds.skipped) == ["a/broken.png", "b/notes.txt"]
    with pytest.raises(DataError, match="notes.txt' is not an image"):
        create_dataset(DataConfig(name="imagefolder", path=tmp_path / "imgs", strict=True))
    (tmp_path / "imgs" / "b" / "notes.txt").unlink()
    with pytest.raises(CorruptDataError, match="broken.png' cannot be read"):
        create_dataset(DataConfig(name="imagefolder", path=tmp_path / "imgs", strict=True))


@pytest.mark.parametrize("val_name", ["val", "valid", "validation"])
def test_imagefolder_validation_folder_is_the_validation_split(tmp_path: Path, val_name: str) -> None:
    names = ["cat", "dog"]
    for split, n, seed in (("train", 12, 0), (val_name, 4, 1), ("test", 3, 2)):
        x, y = make_images(n, classes=2, size=20, seed=seed)
        _write_pngs(tmp_path / "imgs" / split, x, y, names)
    cfg = load_config(None, ["data.name=imagefolder", f"data.path={tmp_path / 'imgs'}", "data.image_size=16"])
    ds = create_dataset(cfg.data)
    assert ds.input_shape == (1, 16, 16)  # one number: a square
    assert ds.val_source == f"folder {val_name}/" and ds.val_x.shape == (8, 1, 16, 16)
    splits = split_dataset(ds, cfg.data.val_fraction, cfg.data.split_seed)
    assert splits.sizes() == {"train": 24, "val": 8, "test": 6}  # nothing held out of train/
    assert np.array_equal(splits.val_x, ds.val_x)


def test_imagefolder_needs_a_path_and_two_classes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.path is not set"):
        create_dataset(DataConfig(name="imagefolder"))
    (tmp_path / "one" / "only").mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "one" / "only" / "x.png")
    with pytest.raises(DataError, match="has 1 class subfolder"):
        create_dataset(DataConfig(name="imagefolder", path=tmp_path / "one"))


def test_npz_with_index_and_onehot_labels(tmp_path: Path, tiny_npz: Path) -> None:
    ds = create_dataset(DataConfig(name="npz", path=tiny_npz))
    assert ds.class_names == ("nw", "ne", "sw", "se") and ds.label_encoding == "index"
    x, y = make_images(10)
    onehot = np.eye(4, dtype=np.uint8)[y]
    np.savez(tmp_path / "oh.npz", x=x[..., None], y=onehot)  # NHWC, one-hot
    ds = create_dataset(DataConfig(name="npz", path=tmp_path / "oh.npz"))
    assert ds.label_encoding == "onehot" and ds.train_x.shape[1:] == (1, 16, 16)
    assert np.array_equal(np.sort(np.concatenate([ds.train_y, ds.test_y])), np.sort(y))


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": np.zeros((10, 8, 8), np.uint8), "y": np.arange(9) % 2}, "x has 10 images but y has 9 labels"),
    ({"x": np.zeros((10, 8, 8), np.uint8), "y": np.arange(10) % 2 - 1}, "holds the label -1; labels are class indices"),
    ({"x": np.zeros((10, 8, 8), np.uint8), "y": np.zeros(10, np.int64)}, "every training image has the same label"),
    ({"x": np.zeros((10, 8, 8), np.uint8), "y": np.arange(10) % 2, "x_test": np.zeros((4, 8, 8), np.uint8),
      "y_test": np.array([0, 1, 2, 3])}, "the test split has classes the training split never shows ('2', '3')"),
])
def test_npz_bad_data_is_refused_before_training(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=re.escape(message)):
        create_dataset(DataConfig(name="npz", path=tmp_path / "bad.npz"))


def test_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "nox.npz", images=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"missing \['x', 'y'\]"):
        create_dataset(DataConfig(name="npz", path=tmp_path / "nox.npz"))
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CorruptDataError, match="trunc.npz' is not a readable .npz"):
        create_dataset(DataConfig(name="npz", path=tmp_path / "trunc.npz"))
    with pytest.raises(DataNotFoundError, match="does not exist"):
        create_dataset(DataConfig(name="npz", path=tmp_path / "absent.npz"))


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_the_debian_package(tmp_path: Path) -> None:
    ds = create_dataset(DataConfig(name="fashion-mnist", data_dir=tmp_path / "data", download=False))
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert np.bincount(ds.test_y).tolist() == [1000] * 10
