"""The run folder: plain files anyone can read, always written.

    runs/<run_id>/
        run.json            id, experiment, status, times, error, tags (host, pid), params; written
                            "finished" only after every other backend ended the run
        config.yaml         the resolved config
        metrics.jsonl       one line per epoch
        summary.json        final (test) metrics
        checkpoints/        best.pt, last.pt
        <name>.csv / .json  tables and documents (predictions, confusion matrix, curves, ...)
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from trainlab.fileio import atomic_write_json, atomic_write_text
from trainlab.tracking.base import MetricPoint, RunInfo, Status, Tracker

if TYPE_CHECKING:
    from trainlab.evaluate import Evaluation


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class FolderTracker(Tracker):
    name = "folder"
    finishes_last = True

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._record: dict[str, Any] = {}

    @property
    def run_dir(self) -> Path:
        assert self._dir is not None, "start() first"
        return self._dir

    def start(self, run: RunInfo) -> None:
        self._dir = run.run_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        previous = read_run_record(self._dir) if run.resumed else {}
        self._record = {
            **previous,
            "run_id": run.run_id,
            "experiment": run.experiment,
            "status": "running",
            "started": previous.get("started", _now()),
            "ended": None,
            "error": None,
            "tracking_failures": {},
            "tags": {**previous.get("tags", {}), **run.tags},
            "params": previous.get("params", {}),
        }
        if run.resumed:
            self._record["resumed"] = previous.get("resumed", 0) + 1
        self._save()

    def _save(self) -> None:
        atomic_write_json(self.run_dir / "run.json", self._record)

    def log_params(self, params: dict[str, str]) -> None:
        self._record["params"].update(params)
        self._save()

    def set_tags(self, tags: dict[str, str]) -> None:
        self._record["tags"].update(tags)
        self._save()

    def log_metrics(self, points: Sequence[MetricPoint]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"step": p.step, **p.values}) + "\n" for p in points)

    def replace_history(self, history: Sequence[dict[str, float]]) -> None:
        lines = "".join(json.dumps({"step": i + 1, **m}) + "\n" for i, m in enumerate(history))
        atomic_write_text(self.run_dir / "metrics.jsonl", lines)

    def log_summary(self, metrics: dict[str, float]) -> None:
        atomic_write_json(self.run_dir / "summary.json", metrics)

    def log_dict(self, name: str, data: Any) -> None:
        if name.endswith((".yaml", ".yml")):
            atomic_write_text(self.run_dir / name, yaml.safe_dump(data, sort_keys=False))
        else:
            atomic_write_json(self.run_dir / name, data)

    def log_text(self, name: str, text: str) -> None:
        atomic_write_text(self.run_dir / name, text)

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        writer.writerows(rows)
        atomic_write_text(self.run_dir / f"{name}.csv", buf.getvalue())

    def log_evaluation(self, ev: Evaluation, prefix: str) -> None:
        columns, rows = ev.predictions
        self.log_table(f"{prefix}predictions", columns, rows)
        self.log_table(f"{prefix}per_class", ["class", "precision", "recall", "f1", "support"],
                       [[c["class"], c["precision"], c["recall"], c["f1"], c["support"]] for c in ev.per_class])
        self.log_table(f"{prefix}confusion_matrix", ["true \\ predicted", *ev.class_names],
                       [[name, *map(int, row)] for name, row in zip(ev.class_names, ev.confusion)])
        self.log_dict(f"{prefix}roc_curves.json", ev.roc)
        self.log_dict(f"{prefix}pr_curves.json", ev.pr)

    def log_model(self, path: Path, metadata: dict[str, Any]) -> None:
        self.log_artifact(path, "checkpoints")

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        path = Path(path).resolve()
        if self.run_dir.resolve() in path.parents:
            return  # already part of the run folder
        dest = self.run_dir / (artifact_path or "") / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)

    def note_failures(self, failures: dict[str, str]) -> None:
        self._record["tracking_failures"] = dict(failures)

    def finish(self, status: Status, error: str | None = None) -> None:
        self._record.update(status=status, ended=_now(), error=error)
        self._save()

    def where(self) -> str:
        return f"run folder: {self.run_dir}/"


def mark_run_killed(run_dir: Path, why: str) -> bool:
    """A run folder whose record says it runs (its process died) or finished (another backend's record of it was
    cut) marked killed, with why; False if it was already ended otherwise or has no readable record."""
    try:
        record = read_run_record(run_dir)
    except (OSError, ValueError):
        return False
    if record.get("status") not in ("running", "finished"):
        return False
    record.update(status="killed", error=why, ended=record.get("ended") or _now())
    atomic_write_json(Path(run_dir) / "run.json", record)
    return True


def read_run_record(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def read_history(run_dir: Path) -> list[dict[str, float]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
