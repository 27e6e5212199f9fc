"""What the notebooks share: finding the project from wherever Jupyter starts them, and the latest run.

Jupyter runs a notebook with ``notebooks/`` as its working directory; a headless run may use the
project root. Both must find the same MLflow store and data folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from trainlab.errors import RunNotFound

MARKERS = ("mlruns", "pyproject.toml", "configs")


def project_root(start: Path | None = None) -> Path:
    """The nearest folder, from ``start`` (the working directory) upwards, that holds a store or the project."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in MARKERS):
            return folder
    return here


def enter_project(start: Path | None = None) -> Path:
    """Work from the project root, so relative paths (mlruns/, data/, runs/) mean what they mean to `trainlab`."""
    root = project_root(start)
    os.chdir(root)
    return root


def latest_training_run(record: object) -> str:
    """The newest finished training run in the store (the notebook's default)."""

    rows = [r for r in record.search("attributes.status = 'FINISHED'")  # type: ignore[attr-defined]
            if r.tags.get("job", "train") in ("train", "trial")]
    if not rows:
        raise RunNotFound("no finished training run in the store; train one first (`make run`)")
    return max(rows, key=lambda r: r.start_ms).run_id
