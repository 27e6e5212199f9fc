"""Tracking: every run recorded by the run folder, MLflow (the record of truth) and W&B.

``create_trackers`` builds the configured backends; ``Run`` fans calls out to
them from a background worker so logging never blocks training.
"""

from __future__ import annotations

from pathlib import Path

from trainlab.config import TrackingConfig
from trainlab.tracking.base import MetricPoint, RunInfo, Status, Tracker
from trainlab.tracking.folder_backend import FolderTracker, read_history, read_run_record
from trainlab.tracking.mlflow_backend import MlflowTracker
from trainlab.tracking.run import Run, prepare_in_background
from trainlab.tracking.wandb_backend import WandbTracker


def create_trackers(cfg: TrackingConfig, wandb_dir: Path = Path(".")) -> list[Tracker]:
    """The run folder always; then MLflow and/or W&B as configured."""
    trackers: list[Tracker] = [FolderTracker()]
    if "mlflow" in cfg.trackers:
        trackers.append(MlflowTracker(cfg.mlflow_uri, cfg.system_metrics_interval, cfg.figures))
    if "wandb" in cfg.trackers:
        trackers.append(WandbTracker(cfg.wandb_project, cfg.wandb_entity, cfg.wandb_mode,
                                     cfg.system_metrics_interval, wandb_dir, cfg.figures))
    return trackers


__all__ = [
    "FolderTracker", "MetricPoint", "MlflowTracker", "Run", "RunInfo", "Status", "Tracker", "WandbTracker",
    "create_trackers", "prepare_in_background", "read_history", "read_run_record",
]
