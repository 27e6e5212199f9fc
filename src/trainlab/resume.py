"""Completing a run that was interrupted: the run it names, refused while another process records it or when
it has nothing to continue from, then its remaining epochs, test evaluation and record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainlab.checkpoint import LAST, load_checkpoint
from trainlab.config import Config, validate_config
from trainlab.errors import CheckpointError, RunLocked, RunNotFound
from trainlab.experiment import RunOutcome, run_experiment
from trainlab.runs import run_folder
from trainlab.tracking import read_run_record
from trainlab.tracking.mlflow_store import resolve_tracking_uri
from trainlab.tracking.process import process_alive


@dataclass(frozen=True)
class ResumeTarget:
    """A run to complete: its last checkpoint and config, and whether every backend already has its end."""

    run_id: str
    run_dir: Path
    payload: dict[str, Any]
    config: Config
    finished: bool


def resume_target(ref: str, runs_dir: Path) -> ResumeTarget:
    """Find a run to resume by folder, run id or MLflow run id; refuse one that is alive or has nothing to continue
    from."""
    folder = run_folder(ref, runs_dir, resolve_tracking_uri(None))  # an MLflow run id names its folder too
    if folder is None or not (folder / "run.json").is_file():
        raise RunNotFound(f"{ref!r} is not a run folder or a run id under {str(runs_dir)!r}; `--resume` needs "
                          "the run folder with its checkpoints (list runs with `trainlab runs`)")
    record = read_run_record(folder)
    run_id = record.get("run_id", folder.name)
    if record.get("status") == "running" and process_alive(record.get("tags", {})):
        raise RunLocked(f"run {run_id!r} is still running (pid {record['tags'].get('trainlab.pid')}); wait for "
                        "it to end, or stop it, before resuming it")
    last = folder / "checkpoints" / LAST
    if not last.is_file():
        raise CheckpointError(f"run {run_id!r} has no last checkpoint: it ended before its first epoch did, so "
                              "there is nothing to continue from; start it again with `trainlab train` and its config")
    payload = load_checkpoint(last, complete=True)
    if "training" not in payload:
        raise CheckpointError(f"{str(last)!r} holds no training state; it cannot be continued")
    cfg = validate_config(payload["config"]).model_copy(update={"output_dir": folder.parent})
    # finished with a backend that could not record it (a dead server, a recording process that died): resumed too,
    # to fill in that backend's record
    complete = record.get("status") == "finished" and not record.get("tracking_failures")
    return ResumeTarget(run_id, folder, payload, cfg, complete)


def resume_experiment(target: ResumeTarget, **kwargs: Any) -> RunOutcome:
    """Complete a run: its remaining epochs, its test evaluation, and every backend's record and end."""
    return run_experiment(target.config, resume=target.payload, run_id=target.run_id, **kwargs)
