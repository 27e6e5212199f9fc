"""Tracking: one run, recorded by every configured backend.

``Run`` fans each call out to the backends and, used as a context manager,
ends the run as finished, failed (with the error) or killed (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from trainlab.tracking.base import RunInfo, Status, Tracker
from trainlab.tracking.folder_backend import FolderTracker, read_history, read_run_record


class Run:
    def __init__(self, info: RunInfo, trackers: Sequence[Tracker]) -> None:
        self.info = info
        self.trackers = list(trackers)
        self.status: Status | None = None

    @property
    def run_id(self) -> str:
        return self.info.run_id

    @property
    def run_dir(self) -> Path:
        return self.info.run_dir

    def __enter__(self) -> "Run":
        for t in self.trackers:
            t.start(self.info)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.finish("finished")
        elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
            self.finish("killed", f"interrupted ({type(exc).__name__})")
        else:
            self.finish("failed", f"{type(exc).__name__}: {exc}")

    def finish(self, status: Status, error: str | None = None) -> None:
        if self.status is not None:
            return
        self.status = status
        for t in self.trackers:
            t.finish(status, error)

    def log_params(self, params: dict[str, str]) -> None:
        for t in self.trackers:
            t.log_params(params)

    def set_tags(self, tags: dict[str, str]) -> None:
        for t in self.trackers:
            t.set_tags(tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for t in self.trackers:
            t.log_metrics(metrics, step)

    def replace_history(self, history: Sequence[dict[str, float]]) -> None:
        for t in self.trackers:
            t.replace_history(history)

    def log_summary(self, metrics: dict[str, float]) -> None:
        for t in self.trackers:
            t.log_summary(metrics)

    def log_dict(self, name: str, data: Any) -> None:
        for t in self.trackers:
            t.log_dict(name, data)

    def log_text(self, name: str, text: str) -> None:
        for t in self.trackers:
            t.log_text(name, text)

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        for t in self.trackers:
            t.log_table(name, columns, rows)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        for t in self.trackers:
            t.log_artifact(path, artifact_path)


__all__ = ["FolderTracker", "Run", "RunInfo", "Status", "Tracker", "read_history", "read_run_record"]
