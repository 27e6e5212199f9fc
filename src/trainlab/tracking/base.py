"""The one small interface every tracking backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

Status = Literal["finished", "failed", "killed"]


@dataclass(frozen=True)
class RunInfo:
    """Who the run is: its id, its local folder, its experiment and the tags known at start."""

    run_id: str
    run_dir: Path
    experiment: str
    tags: dict[str, str] = field(default_factory=dict)
    resumed: bool = False


class Tracker(ABC):
    """A backend that records runs. Constructors are cheap; work starts in :meth:`start`."""

    name: str = "tracker"

    @abstractmethod
    def start(self, run: RunInfo) -> None: ...

    @abstractmethod
    def log_params(self, params: dict[str, str]) -> None: ...

    @abstractmethod
    def set_tags(self, tags: dict[str, str]) -> None: ...

    @abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    @abstractmethod
    def replace_history(self, history: Sequence[dict[str, float]]) -> None:
        """On resume: make the per-epoch record equal ``history`` (epoch i+1 = history[i])."""

    @abstractmethod
    def log_summary(self, metrics: dict[str, float]) -> None:
        """Final metrics of the run (test split)."""

    @abstractmethod
    def log_dict(self, name: str, data: Any) -> None:
        """A JSON or YAML document (by ``name``'s suffix) stored with the run."""

    @abstractmethod
    def log_text(self, name: str, text: str) -> None: ...

    @abstractmethod
    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """A file produced by the run (a checkpoint, a plot)."""

    @abstractmethod
    def finish(self, status: Status, error: str | None = None) -> None: ...
