from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import idx_bytes, make_images
from PIL import Image
from typer.testing import CliRunner

from trainlab.cli import app
from trainlab.tracking import read_run_record

runner = CliRunner()
TRAINLAB = str(Path(sys.executable).with_name("trainlab"))


def invoke(*args: str):  # noqa: ANN201
    return runner.invoke(app, list(args), catch_exceptions=False)


def only_run_dir() -> Path:
    (run_dir,) = Path("runs").iterdir()
    return run_dir


@pytest.mark.slow
def test_all_then_test_then_predict_on_digits(tmp_path: Path) -> None:
    result = invoke("all", "train.epochs=3", "threads=1", "--quiet")
    assert result.exit_code == 0, result.output
    assert "verified digits.csv.gz" in result.output
    assert "test accuracy" in result.output and "macro F1" in result.output and "AUROC" in result.output
    run_dir = only_run_dir()
    assert f"run folder: {run_dir}/" in result.output and "MLflow: run" in result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.8

    # test: by run id, as JSON, equal to what the run recorded
    tested = invoke("test", run_dir.name, "--json")
    assert tested.exit_code == 0, tested.output
    assert json.loads(tested.stdout)["metrics"]["accuracy"] == summary["test_accuracy"]
    table = invoke("test", str(run_dir / "checkpoints" / "best.pt"))
    assert "images/s inference" in table.output and "precision" in table.output

    # predict: PNG files (any size, resized) and an IDX file, as a table and as JSON
    from sklearn.datasets import load_digits

    digits = load_digits()
    pngs = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(np.uint8(digits.images[i] * 15)).resize((32, 32)).save(path)
        pngs.append(str(path))
    idx = tmp_path / "few-idx3-ubyte.gz"
    idx.write_bytes(gzip.compress(idx_bytes(np.uint8(digits.images[:5] * 15))))
    shown = invoke("predict", run_dir.name, *pngs, str(idx), "--top-k", "2")
    assert shown.exit_code == 0, shown.output
    assert "few-idx3-ubyte.gz[4]" in shown.output and "images/s" in shown.output
    as_json = json.loads(invoke("predict", run_dir.name, str(idx), "--json", "--top-k", "3").stdout)
    assert len(as_json) == 5
    assert all([t["label"] for t in item["top_k"]][0] == item["label"] and len(item["top_k"]) == 3 for item in as_json)
    assert all(abs(sum(item["probabilities"].values()) - 1) < 1e-6 for item in as_json)
    assert sum(item["label"] == str(d) for item, d in zip(as_json, digits.target[:5])) >= 4

    # --int8: a quantized copy, calibrated on the training images; same labels on these, other probabilities
    int8 = invoke("predict", run_dir.name, str(idx), "--int8")
    assert int8.exit_code == 0, int8.output
    assert "images/s int8 (quantized in" in int8.output
    int8_json = json.loads(invoke("predict", run_dir.name, str(idx), "--json", "--int8").stdout)
    assert [item["label"] for item in int8_json] == [item["label"] for item in as_json]
    assert [item["probability"] for item in int8_json] != [item["probability"] for item in as_json]
    tested8 = json.loads(invoke("test", run_dir.name, "--json", "--int8").stdout)
    assert tested8["precision"] == "int8" and tested8["metrics"]["fp32_accuracy"] == summary["test_accuracy"]
    assert tested8["metrics"]["label_agreement_fp32"] > 0.9
    assert "labels agree with fp32" in invoke("test", run_dir.name, "--int8").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "train.optimizer.lr=-1"], "error: invalid config: train.optimizer.lr = -1: input should be greater than 0"),
        (["train", "--config", "missing.yaml"], "error: config file 'missing.yaml' does not exist"),
        (["train", "model.arch=huge"], "error: invalid config: model.arch = 'huge': input should be 'small', 'fast', 'medium'"),
        (["download", "--dataset", "svhn"], "error: invalid config: data.name = 'svhn'"),
        (["train", "--resume", "x", "train.epochs=2"], "error: --resume continues a run with the config"),
        (["train", "--resume", "nope"], "error: 'nope' is not a run folder or a run id under 'runs'"),
        (["test", "nope.pt"], "error: 'nope.pt' is not a checkpoint file"),
        (["train", "train.loss.name=binary_cross_entropy"], "error: train.loss.name is 'binary_cross_entropy' but"),
        (["train", "data.name=npz"], "error: data.name is 'npz' but data.path is not set"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not Path("runs").exists()


@pytest.mark.slow
def test_predict_rejects_missing_inputs_and_wrong_idx_shape(tmp_path: Path) -> None:
    assert invoke("train", "train.epochs=1", "threads=1", "--quiet").exit_code == 0
    run_id = only_run_dir().name
    missing = runner.invoke(app, ["predict", run_id, "nope.png"])
    assert missing.exit_code == 2 and "input 'nope.png' does not exist" in missing.stderr
    wrong = tmp_path / "big-idx3-ubyte"
    wrong.write_bytes(idx_bytes(np.zeros((2, 28, 28), np.uint8)))
    result = runner.invoke(app, ["predict", run_id, str(wrong)])
    assert result.exit_code == 2 and "holds images of shape (1, 28, 28), but the model takes (1, 8, 8)" in result.stderr


def test_predict_takes_folders_recursively_image_files_only_sorted(tmp_path: Path) -> None:
    assert invoke("train", "train.epochs=1", "threads=1", "--quiet", "--tracker", "none").exit_code == 0
    folder = tmp_path / "photos"
    (folder / "b_more").mkdir(parents=True)
    (folder / ".thumbs").mkdir()
    for path in (folder / "c.png", folder / "a.jpg", folder / "b_more" / "x.png", folder / ".thumbs" / "h.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    (folder / "notes.txt").write_text("not an image")
    result = runner.invoke(app, ["predict", only_run_dir().name, str(folder), "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: left out 2 file(s) in the folders that are not images or are hidden (")
    assert "notes.txt" in result.stderr
    sources = [item["source"] for item in json.loads(result.stdout)]
    assert sources == [str(folder / "a.jpg"), str(folder / "b_more" / "x.png"), str(folder / "c.png")]
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(app, ["predict", only_run_dir().name, str(tmp_path / "empty")])
    assert empty.exit_code == 2 and empty.stderr.startswith(f"error: folder {str(tmp_path / 'empty')!r} holds no "
                                                            "image files")


def bomb_png(path: Path, side: int = 60_000) -> Path:
    """A PNG whose header declares side x side pixels: a few bytes that would decode to gigabytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


def test_predict_on_a_decompression_bomb_is_one_line(tmp_path: Path) -> None:
    assert invoke("train", "train.epochs=1", "threads=1", "--quiet", "--tracker", "none").exit_code == 0
    result = runner.invoke(app, ["predict", only_run_dir().name, str(bomb_png(tmp_path / "bomb.png"))])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "is too large to decode safely (Image size (3600000000 pixels) exceeds limit" in result.stderr


@pytest.mark.slow
def test_predict_int8_without_the_training_images_says_so(tiny_npz: Path, tmp_path: Path) -> None:
    assert invoke("train", "data.name=npz", f"data.path={tiny_npz}", "train.epochs=1", "threads=1", "--quiet").exit_code == 0
    image = tmp_path / "one.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(image)
    tiny_npz.unlink()
    result = runner.invoke(app, ["predict", only_run_dir().name, str(image), "--int8"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith("error: --int8 calibrates on the model's training images, which are not available: "
                                    f"data.path = {str(tiny_npz)!r} does not exist")
    assert invoke("predict", only_run_dir().name, str(image)).exit_code == 0  # fp32 needs only the checkpoint


def test_predict_warns_when_the_background_is_the_opposite_of_training(tmp_path: Path) -> None:
    """A dark digit photographed on white paper, fed to a model trained on light-on-dark digits."""
    assert invoke("train", "train.epochs=3", "threads=1", "--quiet", "--tracker", "none").exit_code == 0
    from sklearn.datasets import load_digits

    digits = load_digits()
    paper = []
    for i in range(4):
        path = tmp_path / f"paper{i}.png"
        Image.fromarray(np.uint8(255 - digits.images[i] * 15)).save(path)  # dark ink, white paper
        paper.append(str(path))
    plain = runner.invoke(app, ["predict", only_run_dir().name, *paper, "--json"])
    assert plain.exit_code == 0
    assert plain.stderr.count("\n") == 1 and plain.stderr.startswith(
        "warning: 4 of 4 images have a light background (")
    assert "but the model was trained on dark backgrounds; its labels for them are likely wrong: pass --invert" in plain.stderr
    inverted = runner.invoke(app, ["predict", only_run_dir().name, *paper, "--json", "--invert"])
    assert inverted.exit_code == 0 and inverted.stderr == ""
    labels = [item["label"] for item in json.loads(inverted.stdout)]
    assert sum(label == str(d) for label, d in zip(labels, digits.target[:4])) >= 3


@pytest.mark.slow
def test_piped_output_says_what_it_trains_and_keeps_talking_inside_long_epochs(tmp_path: Path) -> None:
    """CI logs, Docker, `| tee`: no progress bar, so a line per epoch and one every --log-interval seconds."""
    done = subprocess.run([TRAINLAB, "train", "data.name=npz", f"data.path={_big_npz(tmp_path)}", "model.arch=medium",
                           "train.epochs=1", "threads=1", "--tracker", "none", "--log-interval", "0.5"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    run_id = only_run_dir().name
    assert lines[0].startswith("npz: 1,152 train / 128 val (10% of train, stratified) / 320 test (20% of x, stratified: no x_test) "
                               "images of 1x28x28, 4 classes "
                               "(0, 1, 2, 3) · model medium (")
    assert lines[0].endswith(f" parameters) · cpu, 1 thread · run {run_id}")
    inside = [line for line in lines if line.startswith("epoch 1/1  step ")]
    assert inside, done.stdout
    assert all("(running)" in line and "img/s  epoch ends in" in line for line in inside)
    assert any(line.startswith("epoch 1/1  loss ") for line in lines)  # the epoch's own line still comes
    assert "\x1b[" not in done.stdout  # no terminal control codes in a log


def test_an_image_folder_as_people_have_it(tmp_path: Path) -> None:
    """train/ val/ test/ folders, a stray text file and a broken JPEG: trained on, said, recorded."""
    names = ["cat", "dog"]
    for split, n, seed in (("train", 30, 0), ("val", 5, 1), ("test", 5, 2)):
        x, y = make_images(n, classes=2, size=20, seed=seed)
        for i, (img, label) in enumerate(zip(x, y)):
            folder = tmp_path / "pets" / split / names[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{i}.png")
    (tmp_path / "pets" / "train" / "cat" / "README.txt").write_text("from the shelter")
    (tmp_path / "pets" / "train" / "dog" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = runner.invoke(app, ["train", "data.name=imagefolder", f"data.path={tmp_path / 'pets'}", "data.image_size=16",
                                 "train.epochs=2", "threads=1", "--tracker", "none"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("imagefolder: 60 train (folder train/) / 10 val (folder val/) / 10 test (folder "
                                    "test/) images of 1x16x16, 2 classes (cat, dog)")
    assert result.stderr.startswith("warning: skipped 2 unreadable or non-image files (train/cat/README.txt, "
                                    "train/dog/cut.jpg); all are listed in the run's data.json")
    data = json.loads((only_run_dir() / "data.json").read_text())
    assert data["skipped_files"] == ["train/cat/README.txt", "train/dog/cut.jpg"] and data["validation"] == "folder val/"
    strict = runner.invoke(app, ["train", "data.name=imagefolder", f"data.path={tmp_path / 'pets'}", "data.strict=true",
                                 "--tracker", "none", "output_dir=strict"])
    assert strict.exit_code == 2 and "README.txt' is not an image" in strict.stderr and not Path("strict").exists()

    # no test/ folder: the test images are carved out of train/, and the start line says so
    for junk in ("test", "val"):
        for f in sorted((tmp_path / "pets" / junk).rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        (tmp_path / "pets" / junk).rmdir()
    carved = runner.invoke(app, ["train", "data.name=imagefolder", f"data.path={tmp_path / 'pets'}", "data.image_size=16",
                                 "train.epochs=1", "threads=1", "--tracker", "none", "output_dir=carved"])
    assert carved.exit_code == 0, carved.output
    assert carved.stdout.startswith("imagefolder: 43 train (the rest of folder train/) / 5 val (10% of train, stratified) "
                                    "/ 12 test (20% of folder train/: 12 of 60 images, stratified: no test/ folder) "
                                    "images"), carved.stdout
    assert "images per class (train/val/test): cat 21/3/6, dog 22/2/6" in carved.stdout, carved.stdout


@pytest.mark.slow
def test_bad_model_files_are_refused_in_one_line(tmp_path: Path) -> None:
    import torch

    from trainlab.checkpoint import save_checkpoint

    assert invoke("train", "train.epochs=1", "threads=1", "--quiet", "--tracker", "none").exit_code == 0
    good = torch.load(only_run_dir() / "checkpoints" / "best.pt", weights_only=True)
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    save_checkpoint(tmp_path / "keyless.pt", {"epoch": 1})
    wrong = {**good, "model": {**good["model"], "input_shape": [1, 16, 16]}}  # weights of an 8x8 model
    save_checkpoint(tmp_path / "wrong-shape.pt", {k: v for k, v in wrong.items() if k != "format"})
    for name, message in (("empty.pt", "is empty (0 bytes)"), ("foreign.pt", "is not a trainlab checkpoint"),
                          ("keyless.pt", "has no valid 'config'"), ("wrong-shape.pt", "do not fit the architecture")):
        for command in (["test", str(tmp_path / name)], ["predict", str(tmp_path / name), str(tmp_path / "x.png")]):
            Image.new("L", (8, 8)).save(tmp_path / "x.png")
            result = runner.invoke(app, command)
            assert result.exit_code == 2 and result.stderr.count("\n") == 1, (name, result.output)
            assert message in result.stderr and "Traceback" not in result.output, (name, result.stderr)


def test_version_and_help_list_the_modes() -> None:
    assert __import__("trainlab").__version__ in invoke("--version").output
    out = invoke("--help").output
    for mode in ("download", "train", "test", "all", "predict"):
        assert mode in out


# -- the real console script, in separate processes -------------------------------------------


def _big_npz(tmp_path: Path) -> Path:
    x, y = make_images(400, classes=4, size=28)
    path = tmp_path / "big.npz"
    np.savez(path, x=x, y=y)
    return path


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([TRAINLAB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_epochs(proc: subprocess.Popen, count: int, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for metrics in Path("runs").glob("*/metrics.jsonl"):
            if len(metrics.read_text().splitlines()) >= count:
                return metrics.parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("training did not reach the epoch in time")


@pytest.mark.slow
def test_sigterm_marks_the_run_killed_and_says_how_to_resume(tmp_path: Path) -> None:
    proc = _start("train", "data.name=npz", f"data.path={_big_npz(tmp_path)}", "model.arch=medium",
                  "train.epochs=20", "threads=1", "--quiet")
    run_dir = _wait_for_epochs(proc, 1)
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert f"run {run_dir.name} is marked killed. Continue it with `trainlab train --resume {run_dir.name}`" in stderr
    assert "Traceback" not in stderr
    record = read_run_record(run_dir)
    assert record["status"] == "killed" and record["error"] == "interrupted (KeyboardInterrupt)"


def test_a_bad_data_path_is_one_line_though_the_recording_processes_had_started() -> None:
    """`trainlab train` starts MLflow's and W&B's processes before the data is read: a missing folder is still the
    one error line (the exit cut a child's start short, which once printed a second, spurious warning)."""
    for _ in range(3):
        done = subprocess.run([TRAINLAB, "train", "data.name=imagefolder", "data.path=/nonexistent/x"],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "WANDB_MODE": "offline"})
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("error: ") and "/nonexistent/x" in done.stderr
