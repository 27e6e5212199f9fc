"""The one small interface every tracking backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from trainlab.evaluate import Evaluation

Status = Literal["finished", "failed", "killed"]
# the tags a sweep's trial runs carry: which sweep, which trial, which seed, the swept values (JSON)
SWEEP_TAG, TRIAL_TAG, SEED_TAG, PARAMS_TAG = "sweep", "sweep_trial", "sweep_seed", "sweep_params"


def says_disk_full(reason: str) -> bool:
    """Whether a backend's error text says its disk is full (OSError's words, or SQLite's)."""
    lowered = reason.lower()
    return "no space left" in lowered or "disk is full" in lowered


@dataclass(frozen=True)
class RunInfo:
    """Who the run is: its id, local folder, experiment, resolved config, and tags known at start."""

    run_id: str
    run_dir: Path
    experiment: str
    config: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    resumed: bool = False
    job: str = "train"  # or "evaluate" (a saved model tested on its own), "trial" (of a sweep), "sweep"
    group: str | None = None  # W&B's group: the experiment, or the sweep a trial belongs to


@dataclass(frozen=True)
class MetricPoint:
    """Values of one step (an epoch), stamped when the training loop logged them."""

    step: int
    timestamp_ms: int
    values: dict[str, float]


class Tracker(ABC):
    """A backend that records runs.

    Constructors are cheap (no imports of client libraries, no I/O); ``prepare``
    imports the client, ``start`` opens the run. All calls come from one worker
    thread, in order; an exception marks the backend failed without stopping
    training.
    """

    name: str = "tracker"
    finishes_last: bool = False  # the run folder: its "finished" is written after every other backend's end
    degraded: str | None = None  # set by start() when recording goes on in a lesser way (W&B offline copy)

    def prepare(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Import the client library; runs in the background while data loads."""

    @abstractmethod
    def start(self, run: RunInfo) -> None: ...

    @abstractmethod
    def log_params(self, params: dict[str, str]) -> None: ...

    @abstractmethod
    def set_tags(self, tags: dict[str, str]) -> None: ...

    @abstractmethod
    def log_metrics(self, points: Sequence[MetricPoint]) -> None: ...

    @abstractmethod
    def replace_history(self, history: Sequence[dict[str, float]]) -> None:
        """On resume: make the per-epoch record hold exactly ``history`` (epoch i+1 = history[i])."""

    @abstractmethod
    def log_summary(self, metrics: dict[str, float]) -> None:
        """Final metrics of the run (test split)."""

    @abstractmethod
    def log_dict(self, name: str, data: Any) -> None:
        """A JSON or YAML document (by ``name``'s suffix) stored with the run."""

    @abstractmethod
    def log_text(self, name: str, text: str) -> None: ...

    @abstractmethod
    def log_evaluation(self, ev: Evaluation, prefix: str) -> None:
        """Predictions table, per-class report, confusion matrix, ROC and PR curves."""

    @abstractmethod
    def log_model(self, path: Path, metadata: dict[str, Any]) -> None:
        """The best checkpoint, as the run's model."""

    @abstractmethod
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Any other file produced by the run."""

    @abstractmethod
    def finish(self, status: Status, error: str | None = None) -> None: ...

    def note_failures(self, failures: dict[str, str]) -> None:  # noqa: B027 - optional hook
        """Before ``finish``: the other backends that could not record the run, and why."""

    def where(self) -> str | None:
        """One line for the user: where the run is recorded and how to look at it."""
        return None

    def sampled_history(self, key: str) -> list[tuple[int, float]]:
        """(timestamp ms, value) of a metric the backend sampled itself (MLflow's system metrics); [] if none."""
        return []
