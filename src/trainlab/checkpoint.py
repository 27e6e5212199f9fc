"""Self-contained checkpoints, written atomically.

A checkpoint holds the weights, the architecture, the resolved config, the
class names, the input shape and (inside the weights) the normalisation, so
``trainlab test`` and ``trainlab predict`` need nothing else. ``last.pt`` also
holds the optimizer, scheduler and loop state that ``--resume`` continues from.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from trainlab.errors import CheckpointError
from trainlab.fileio import atomic_open
from trainlab.models import Classifier

FORMAT = "trainlab-checkpoint/1"
BEST, LAST = "best.pt", "last.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomic: a kill while saving leaves the previous checkpoint intact."""
    with atomic_open(path) as fh:
        torch.save({"format": FORMAT, **payload}, fh)


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; pass a .pt file, a run folder or a run id")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read ({str(exc).splitlines()[0]}); it is damaged") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a trainlab checkpoint (format {payload.get('format') if isinstance(payload, dict) else None!r})")
    return payload


def model_payload(model: Classifier) -> dict[str, Any]:
    return {
        "layers": model.layers,
        "input_shape": list(model.input_shape),
        "num_outputs": model.num_outputs,
        "channels_last": model.channels_last,
        "state_dict": model.state_dict(),
    }


def model_from_checkpoint(payload: dict[str, Any]) -> Classifier:
    spec = payload["model"]
    model = Classifier(spec["layers"], spec["input_shape"], spec["num_outputs"],
                       channels_last=spec.get("channels_last", True))
    model.load_state_dict(spec["state_dict"])
    return model.eval()


def resolve_checkpoint(ref: str | Path, runs_dir: Path, which: str = BEST) -> Path:
    """A .pt path, a run folder, or a run id (a folder name under ``runs_dir``) -> checkpoint path."""
    ref_path = Path(ref)
    if ref_path.is_file():
        return ref_path
    for folder in (ref_path, Path(runs_dir) / str(ref)):
        if folder.is_dir():
            candidate = folder / "checkpoints" / which
            if candidate.is_file():
                return candidate
            raise CheckpointError(f"run {str(folder)!r} has no {which} checkpoint; it did not finish an epoch")
    raise CheckpointError(
        f"{str(ref)!r} is not a checkpoint file, a run folder, or a run id under {str(runs_dir)!r}; "
        "list runs with `ls runs/`"
    )
