"""What a run needs before its first step: an id, folders it can write (checked before any work), and the lock
that makes one process its recorder; and a run that trains nothing (a comparison, a reproduction's verdict)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from trainlab.config import Config, validate_config
from trainlab.errors import RunLocked, StorageError
from trainlab.fileio import check_writable
from trainlab.tracking import Run, RunInfo, create_trackers, prepare_in_background
from trainlab.tracking.mlflow_store import local_store_path, resolve_tracking_uri
from trainlab.tracking.process import this_process


def new_run_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def check_storage(cfg: Config) -> None:
    """Before any work: every folder the run will write takes a file (exit 2 naming it, nothing created)."""
    check_writable(Path(cfg.output_dir), "run folder")
    if "mlflow" in cfg.tracking.trackers and (db := local_store_path(resolve_tracking_uri(cfg.tracking.mlflow_uri))):
        check_writable(db.parent, "MLflow store folder")
        if db.is_file() and not os.access(db, os.W_OK):
            raise StorageError(f"the MLflow store {db} is read-only; fix its permissions or point "
                               "MLFLOW_TRACKING_URI elsewhere")
    if "wandb" in cfg.tracking.trackers and cfg.tracking.wandb_mode != "disabled":
        check_writable(Path("wandb"), "W&B folder")


@contextmanager
def job_run(job: str, experiment: str, mlflow_uri: str, trackers: Sequence[str],
            warn: Callable[[str], None] | None = None) -> Iterator[Run]:
    """A run that trains nothing (a comparison, a reproduction's verdict): recorded in the given store and W&B."""
    cfg = validate_config({"tracking": {"trackers": list(trackers), "mlflow_uri": mlflow_uri}})
    check_storage(cfg)
    created = create_trackers(cfg.tracking)
    prepare_in_background(created, warn)
    run_id = new_run_id()
    info = RunInfo(run_id=run_id, run_dir=Path(cfg.output_dir) / run_id, experiment=experiment,
                   tags={**this_process(), "job": job}, job=job)
    with Run(info, created, finish_timeout=cfg.tracking.finish_timeout, warn=warn) as run:
        yield run


@contextmanager
def run_lock(run_dir: Path, run_id: str) -> Iterator[None]:
    """One process records a run at a time: a second `--resume` of a live run is refused."""
    from filelock import FileLock, Timeout

    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / ".lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunLocked(f"run {run_id!r} is being recorded by another process right now; wait for it to end "
                        "(or stop it) before resuming it") from None
    try:
        yield
    finally:
        lock.release()
