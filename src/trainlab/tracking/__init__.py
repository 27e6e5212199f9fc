"""Tracking: every run recorded by the run folder, MLflow (the record of truth) and W&B.

``create_trackers`` builds the configured backends; ``Run`` fans calls out to
them from a background worker so logging never blocks training.
"""

from __future__ import annotations

from pathlib import Path

from trainlab.config import TrackingConfig
from trainlab.tracking.base import MetricPoint, RunInfo, Status, Tracker
from trainlab.tracking.child import ChildTracker
from trainlab.tracking.folder_backend import FolderTracker, read_history, read_run_record
from trainlab.tracking.mlflow_backend import MlflowTracker
from trainlab.tracking.run import Run, prepare_in_background
from trainlab.tracking.wandb_backend import WandbTracker


def create_trackers(cfg: TrackingConfig, wandb_dir: Path = Path("."), own_processes: bool = False) -> list[Tracker]:
    """The run folder always; then MLflow and/or W&B as configured.

    ``own_processes``: MLflow and W&B each record from a child process (`trainlab train`: one run, whose imports and
    figures then cost another core's time, not the training's); otherwise in this process, where a sweep or a
    library caller making many runs imports their clients once.
    """
    trackers: list[Tracker] = [FolderTracker()]
    backends: list[Tracker] = []
    if "mlflow" in cfg.trackers:
        backends.append(MlflowTracker(cfg.mlflow_uri, cfg.system_metrics_interval, cfg.figures))
    if "wandb" in cfg.trackers:
        backends.append(WandbTracker(cfg.wandb_project, cfg.wandb_entity, cfg.wandb_mode,
                                     cfg.system_metrics_interval, wandb_dir, cfg.figures))
    return trackers + [ChildTracker(t) if own_processes else t for t in backends]


__all__ = [
    "ChildTracker", "FolderTracker", "MetricPoint", "MlflowTracker", "Run", "RunInfo", "Status", "Tracker", "WandbTracker",
    "create_trackers", "prepare_in_background", "read_history", "read_run_record",
]
