from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainlab.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    model_payload,
    save_checkpoint,
)
from trainlab.config import ModelConfig
from trainlab.errors import CheckpointError
from trainlab.models import create_model
from trainlab.runs import local_checkpoint


def test_roundtrip_rebuilds_the_same_model(tmp_path: Path) -> None:
    model = create_model(ModelConfig(arch="medium"), (1, 16, 16), 4, mean=[40.0], std=[30.0]).eval()
    save_checkpoint(tmp_path / "m.pt", {"model": model_payload(model), "class_names": list("abcd")})
    again = model_from_checkpoint(load_checkpoint(tmp_path / "m.pt"))
    x = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    assert torch.equal(model(x), again(x))


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})

    class Unpicklable:
        def __reduce__(self):  # noqa: ANN204
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_checkpoint(path, {"epoch": 2, "bad": Unpicklable()})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_damaged_and_foreign_files_are_named(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ok.pt", {"epoch": 1})
    blob = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="cut.pt' cannot be read"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt' is not a trainlab checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_resolve_by_file_folder_or_run_id(tmp_path: Path) -> None:
    ckpt = tmp_path / "runs" / "r1" / "checkpoints" / "best.pt"
    ckpt.parent.mkdir(parents=True)
    save_checkpoint(ckpt, {})
    assert local_checkpoint(str(ckpt), tmp_path / "runs") == ckpt
    assert local_checkpoint(str(ckpt.parents[1]), tmp_path / "runs") == ckpt
    assert local_checkpoint("r1", tmp_path / "runs") == ckpt
    with pytest.raises(CheckpointError, match="'r2' is not a checkpoint file, a run folder, or a run id"):
        local_checkpoint("r2", tmp_path / "runs")


def test_the_resolver_names_the_best_checkpoint_as_checkpoint_does() -> None:
    import inspect

    from trainlab.checkpoint import BEST

    assert inspect.signature(local_checkpoint).parameters["which"].default == BEST
