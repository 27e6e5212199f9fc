"""Self-contained checkpoints, written atomically.

A checkpoint holds the weights, the architecture, the resolved config, the
class names, the input shape and (inside the weights) the normalisation, so
``trainlab test`` and ``trainlab predict`` need nothing else. ``last.pt`` also
holds the optimizer, scheduler and loop state that ``--resume`` continues from.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from trainlab.errors import CheckpointError
from trainlab.fileio import atomic_open
from trainlab.models import Classifier, ProbeView

FORMAT = "trainlab-checkpoint/1"
BEST, LAST = "best.pt", "last.pt"
REQUIRED = {"config": dict, "class_names": list, "model": dict}
REQUIRED_MODEL = {"layers": list, "input_shape": list, "num_outputs": int, "state_dict": dict}


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomic: a kill or a full disk while saving leaves the previous checkpoint intact.

    Serialised in memory first: torch.save into a file turns a full disk into an opaque
    RuntimeError, while a plain write raises OSError(ENOSPC) naming the file.
    """
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    with atomic_open(path) as fh:
        fh.write(buffer.getbuffer())


def load_checkpoint(path: Path, complete: bool = False) -> dict[str, Any]:
    """A checkpoint's payload; ``complete`` also requires everything test, predict and resume read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; pass a .pt file, a run folder or a run id")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes): it was never written completely; "
                              "use another checkpoint or train again")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises a dozen types for a damaged or foreign file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read ({first}); it is damaged or not a PyTorch "
                              "file: use another checkpoint or train again") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        seen = sorted(map(str, payload))[:6] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{str(path)!r} is not a trainlab checkpoint (it holds {seen}); pass a best.pt or "
                              "last.pt that `trainlab train` wrote")
    if complete:
        check_payload(payload, path)
    return payload


def check_payload(payload: dict[str, Any], path: Path) -> None:
    """Every key test, predict and resume read is there, of the right kind."""
    for section, required in ((payload, REQUIRED), (payload.get("model"), REQUIRED_MODEL)):
        for key, kind in required.items():
            if not isinstance(section, dict) or not isinstance(section.get(key), kind):
                found = type(section.get(key)).__name__ if isinstance(section, dict) else "nothing"
                where = key if section is payload else f"model.{key}"
                raise CheckpointError(f"checkpoint {str(path)!r} has no valid {where!r} ({found}); it is damaged "
                                      "or was not written by trainlab: use another checkpoint")


def model_payload(model: Classifier | ProbeView) -> dict[str, Any]:
    if isinstance(model, ProbeView):  # a linear probe: the checkpoint holds the whole classifier
        model = model.classifier
    return {
        "layers": model.layers,
        "input_shape": list(model.input_shape),
        "num_outputs": model.num_outputs,
        "channels_last": model.channels_last,
        "tta": model.tta,
        "state_dict": model.state_dict(),
    }


def model_from_checkpoint(payload: dict[str, Any]) -> Classifier:
    """The network a checkpoint describes, with its weights; a mismatch is a CheckpointError naming it."""
    spec = payload["model"]
    try:
        # the normalisation's channels (a backbone's three on grey images): placeholders, the weights set them
        stats = [0.0] * int(spec["state_dict"]["scale"].shape[1])
        model = Classifier(spec["layers"], spec["input_shape"], spec["num_outputs"], stats, [1.0] * len(stats),
                           channels_last=spec.get("channels_last", True), tta=spec.get("tta", "none"))
        model.load_state_dict(spec["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"the weights in checkpoint of run {payload.get('run_id', '?')!r} do not fit the "
                              f"architecture it declares ({first}); it is damaged: use another checkpoint") from None
    model.eval()
    return model
