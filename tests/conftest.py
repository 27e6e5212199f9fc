"""Shared fixtures: tiny generated datasets in every on-disk format, and a local HTTP server."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own folder: runs/ and data/ land in tmp_path, never in the repo."""
    monkeypatch.chdir(tmp_path)
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_BASE_URL",
                "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    # wandb's caches and settings live in the test's folder too (the secrets test scans them)
    for var, sub in (("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_DATA_DIR", "data"),
                     ("WANDB_ARTIFACT_DIR", "artifacts")):
        monkeypatch.setenv(var, str(tmp_path / ".wandb-home" / sub))
    monkeypatch.setenv("WANDB_SILENT", "true")


def make_images(n_per_class: int = 60, classes: int = 4, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, size, size) noise images whose class is visible: a bright band at rows of its own."""
    rng = np.random.default_rng(seed)
    n = n_per_class * classes
    y = np.repeat(np.arange(classes), n_per_class)
    x = rng.integers(0, 90, size=(n, size, size)).astype(np.uint8)
    band = size / classes
    for i, label in enumerate(y):
        top, bottom = round(label * band), max(round((label + 1) * band), round(label * band) + 1)
        left = rng.integers(0, size // 2)
        x[i, top:bottom, left:left + size // 2] = rng.integers(170, 256)
    order = rng.permutation(n)
    return x[order], y[order].astype(np.int64)


def write_tiny_npz(folder: Path) -> Path:
    """A .npz with 240 train and 80 test 16x16 images of 4 visibly different classes."""
    x, y = make_images(60)
    x_test, y_test = make_images(20, seed=1)
    path = folder / "tiny.npz"
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test, class_names=np.array(["nw", "ne", "sw", "se"]))
    return path


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    return write_tiny_npz(tmp_path)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode uint8 array as IDX (the MNIST file format)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@dataclass
class IdxSet:
    folder: Path
    files: dict[str, bytes]  # name -> gz bytes as published

    def sha(self, name: str) -> str:
        return hashlib.sha256(self.files[name]).hexdigest()

    def content_sha(self, name: str) -> str:
        return hashlib.sha256(gzip.decompress(self.files[name])).hexdigest()


@pytest.fixture
def idx_set(tmp_path: Path) -> IdxSet:
    """The four MNIST-format .gz files, 28x28, 10 classes, written to a 'published' folder."""
    x, y = make_images(12, classes=10, size=28)
    x_test, y_test = make_images(4, classes=10, size=28, seed=1)
    arrays = {
        "train-images-idx3-ubyte.gz": x, "train-labels-idx1-ubyte.gz": y.astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": x_test, "t10k-labels-idx1-ubyte.gz": y_test.astype(np.uint8),
    }
    folder = tmp_path / "published"
    folder.mkdir()
    files = {}
    for name, arr in arrays.items():
        files[name] = gzip.compress(idx_bytes(arr), mtime=0)
        (folder / name).write_bytes(files[name])
    return IdxSet(folder, files)


@pytest.fixture
def source_for(idx_set: IdxSet):  # noqa: ANN201
    """Build a data Source whose hashes are those of the generated files."""
    from trainlab.data.fetch import RemoteFile, Source

    def build(dataset: str, mirrors: tuple[str, ...] = (), system_dirs: tuple[Path, ...] = ()) -> Source:
        files = tuple(RemoteFile(n, idx_set.sha(n), idx_set.content_sha(n)) for n in idx_set.files)
        return Source(dataset, files, mirrors, system_dirs)

    return build


class _Handler(http.server.BaseHTTPRequestHandler):
    """/ok/<f> serves a file; /error/<f> answers 500; /truncate/<f> stops halfway; /wrong/<f> sends other bytes."""

    root: Path
    requests: list[str]
    authorizations: list[str | None]

    def do_GET(self) -> None:  # noqa: N802
        self.requests.append(self.path)
        self.authorizations.append(self.headers.get("Authorization"))
        mode, _, name = self.path.strip("/").partition("/")
        path = self.root / name
        if mode == "error" or not path.is_file():
            self.send_error(500 if mode == "error" else 404)
            return
        body = path.read_bytes()
        if mode == "wrong":
            body = body[::-1]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "truncate" else body)
        if mode == "truncate":
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Server:
    url: str
    requests: list[str]
    authorizations: list[str | None]  # the Authorization header of each request


@pytest.fixture
def http_server(idx_set: IdxSet) -> Iterator[Server]:
    """A loopback HTTP server publishing ``idx_set``'s files (and any file put in its folder)."""
    requests: list[str] = []
    authorizations: list[str | None] = []
    handler = type("Handler", (_Handler,), {"root": idx_set.folder, "requests": requests,
                                            "authorizations": authorizations})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{server.server_address[1]}", requests, authorizations)
    finally:
        server.shutdown()
        server.server_close()


def interrupt_at(epoch: int, step: int = 0):  # noqa: ANN201
    """Training callbacks that press Ctrl-C at (epoch, step)."""
    from trainlab.train import TrainCallbacks

    class Interrupt(TrainCallbacks):
        def on_step(self, e: int, s: int, loss: float, images: int) -> None:
            if (e, s) == (epoch, step):
                raise KeyboardInterrupt

    return Interrupt()


@pytest.fixture
def fast_config():  # noqa: ANN201
    return build_fast_config


def build_fast_config(*overrides: str):  # noqa: ANN201
    """A config for tiny data that trains in a second or two."""
    from trainlab.config import load_config

    # no report page: a second of figures per run; test_report.py turns it on
    base = ["threads=1", "train.epochs=4", "train.batch_size=32", "train.optimizer.lr=0.01", "tracking.trackers=[]",
            "report=false"]
    return load_config(None, [*base, *overrides])


@pytest.fixture
def digits_sweep(tmp_path: Path):  # noqa: ANN201
    """Run a sweep file (YAML text) on digits, 2 epochs a trial, recorded in MLflow only; returns its id."""
    from typer.testing import CliRunner

    from trainlab.cli import app

    def run(spec: str, *overrides: str) -> str:
        path = tmp_path / "sweep.yaml"
        path.write_text(spec)
        result = CliRunner().invoke(app, ["sweep", str(path), "data.name=digits", "train.epochs=2", "threads=1",
                                          *overrides, "-t", "mlflow", "-q"])
        assert result.exit_code == 0, result.output
        return next(w for w in result.output.split() if w.startswith("sweep-")).rstrip(":")

    return run


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 9 MiB filesystem (tmpfs), mounted for the test; skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=9m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount rights)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# the longest tests (CI's --durations) start first: spread over the workers from the start, they do not leave one
# worker alone with a 4-minute test at the end of the suite
LONGEST_FIRST = ("tests/test_readme.py::test_make_run_then_every_block_of_the_tour_works_as_written",
                 "tests/test_containers.py::", "tests/test_reliability.py::test_kill_9_at_every_stage",
                 "tests/test_reliability.py::test_eight_trainers", "tests/test_sweep_faults.py::")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {prefix: i for i, prefix in enumerate(LONGEST_FIRST)}

    def order(item: pytest.Item) -> int:
        return next((i for prefix, i in rank.items() if item.nodeid.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=order)  # stable: the rest keep their order
