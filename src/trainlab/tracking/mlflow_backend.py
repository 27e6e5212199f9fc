"""MLflow, the record of truth: a local SQLite store by default, any tracking server by URI.

Only MLflow's official client (``MlflowClient``) is used: no global active run.
The URI is taken from the argument, else ``MLFLOW_TRACKING_URI``, else the
embedded store ``mlruns/mlflow.db`` (artifacts in ``mlruns/artifacts``) in the
working folder, which needs no server.

The embedded store is created and migrated once, under a file lock, into a temp
file renamed into place: any number of trainers starting at once on a new
project find either no store or a complete one. A tracking server that is down
or silent costs seconds: MLflow's HTTP retries and timeout are bounded unless
the user set them (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``_TIMEOUT``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.redaction import redact
from trainlab.tracking.base import MetricPoint, RunInfo, Status, Tracker
from trainlab.tracking.mlflow_store import (
    HTTP_WRITES,
    RUN_ID_TAG,
    client_for,
    configure_mlflow,
    experiment_id,
    find_run,
    probe_server,
    resolve_tracking_uri,
)

if TYPE_CHECKING:
    from trainlab.evaluate import Evaluation

_STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
_BATCH = 1000  # MLflow's limit of metrics per log_batch call


def _index_installed_packages() -> None:
    """Logging the model checks its requirements against an index of every installed package's files (0.4 s of
    reading, once per process): built while the run trains, not after it. Harmless if MLflow moved it."""
    try:
        from mlflow.utils.requirements_utils import _init_packages_to_modules_map

        _init_packages_to_modules_map()
    except Exception:  # noqa: S110 - the model's logging builds the index itself then
        pass


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, uri: str | None = None, system_metrics_interval: float = 2.0, figures: bool = True) -> None:
        self._uri_setting = uri
        self._interval = system_metrics_interval
        self._figures = figures
        self.uri = ""
        self.client: Any = None
        self.run_id = ""
        self.experiment_id = ""
        self._monitor: Any = None
        self._logged: dict[str, float] = {}  # a resumed run's metrics already in the store (latest values)

    def prepare(self) -> None:
        """Import what start() and the end of the run need (seconds, done while data loads)."""
        configure_mlflow(HTTP_WRITES)
        import mlflow  # noqa: F401
        import mlflow.pyfunc  # noqa: F401  (the model logged at the end)
        from mlflow.system_metrics import system_metrics_monitor  # noqa: F401

        if not resolve_tracking_uri(self._uri_setting).startswith(("http:", "https:", "databricks")):
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (a database store's ORM: about 0.9 s)

    def start(self, run: RunInfo) -> None:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self.uri = resolve_tracking_uri(self._uri_setting)
        probe_server(self.uri)  # a dead or silent server fails here in seconds, not after minutes of retries
        self.client = client_for(self.uri, HTTP_WRITES)
        self.experiment_id = experiment_id(self.client, run.experiment, self.uri)
        existing = find_run(self.client, run.run_id, [self.experiment_id]) if run.resumed else None
        if existing is not None:
            self.run_id = existing.info.run_id
            self._logged = dict(existing.data.metrics)
            self.client.update_run(self.run_id, status="RUNNING")
            if "error" in existing.data.tags:  # the failed attempt's error is not this attempt's
                self.client.delete_tag(self.run_id, "error")
            self.set_tags(dict(run.tags))
        else:
            created = self.client.create_run(self.experiment_id, run_name=run.run_id,
                                             tags={RUN_ID_TAG: run.run_id, "mlflow.source.name": "trainlab",
                                                   **run.tags})
            self.run_id = created.info.run_id
        self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=self._interval,
                                             samples_before_logging=1, resume_logging=existing is not None,
                                             tracking_uri=self.uri)
        self._monitor.start()
        threading.Thread(target=_index_installed_packages, name="trainlab-mlflow-packages", daemon=True).start()

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        mirrored = {"mlflow.source.git.commit": tags["git_commit"]} if tags.get("git_commit", "none") != "none" else {}
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in {**tags, **mirrored}.items()])

    def _log_points(self, points: Sequence[tuple[int, int, dict[str, float]]]) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(k, float(v), ts, step) for step, ts, values in points for k, v in values.items()]
        for i in range(0, len(metrics), _BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + _BATCH])

    def log_metrics(self, points: Sequence[MetricPoint]) -> None:
        self._log_points([(p.step, p.timestamp_ms, p.values) for p in points])

    def replace_history(self, history: Sequence[dict[str, float]]) -> None:
        import time

        present = {m.step for m in self.client.get_metric_history(self.run_id, "train_loss")}
        now = time.time_ns() // 1_000_000
        self._log_points([(i, now, m) for i, m in enumerate(history, 1) if i not in present])

    def log_summary(self, metrics: dict[str, float]) -> None:
        import time

        # a resumed run that got this far before already holds them (evaluation is deterministic; only
        # timings differ): logging them again would add a second point
        fresh = {k: v for k, v in metrics.items() if k not in self._logged}
        self._log_points([(0, time.time_ns() // 1_000_000, fresh)])

    def log_dict(self, name: str, data: Any) -> None:
        self.client.log_dict(self.run_id, data, name)

    def log_text(self, name: str, text: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_evaluation(self, ev: Evaluation, prefix: str) -> None:
        columns, rows = ev.predictions
        self.client.log_table(self.run_id, {c: [r[i] for r in rows] for i, c in enumerate(columns)},
                              f"{prefix}predictions.json")
        self.client.log_table(self.run_id, {k: [c[k] for c in ev.per_class] for k in ev.per_class[0]},
                              f"{prefix}per_class.json")
        self.client.log_dict(self.run_id, {"labels": list(ev.class_names), "matrix": ev.confusion.tolist()},
                             f"{prefix}confusion_matrix.json")
        self.client.log_dict(self.run_id, ev.roc, f"{prefix}roc_curves.json")
        self.client.log_dict(self.run_id, ev.pr, f"{prefix}pr_curves.json")
        if self._figures:  # the PNGs the run page shows, drawn once for both
            import tempfile

            from trainlab.plots import evaluation_pngs

            with tempfile.TemporaryDirectory(prefix="trainlab-plots-") as tmp:
                for name, png in evaluation_pngs(ev).items():
                    (Path(tmp) / f"{prefix}{name}.png").write_bytes(png)
                self.client.log_artifacts(self.run_id, tmp, "plots")

    def log_model(self, path: Path, metadata: dict[str, Any]) -> None:
        self.client.log_artifact(self.run_id, str(path), "checkpoints")
        self.client.set_tag(self.run_id, "model_artifact", f"checkpoints/{Path(path).name}")
        if "input_shape" in metadata:  # also as an MLflow model: runs:/<id>/model, the registry, serving
            import numpy as np

            from trainlab.tracking.mlflow_pyfunc import log_pyfunc

            log_pyfunc(self.client, self.run_id, Path(path), list(metadata["class_names"]),
                       tuple(metadata["input_shape"]), np.asarray(metadata.get("example", []), dtype=np.uint8))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: Status, error: str | None = None) -> None:
        if self._monitor is not None:
            self._monitor.finish()
        if error:
            self.client.set_tag(self.run_id, "error", redact(error)[:5000])
        self.client.set_terminated(self.run_id, status=_STATUS[status])

    def sampled_history(self, key: str) -> list[tuple[int, float]]:
        if not self.run_id:
            return []
        return sorted((p.timestamp, p.value) for p in self.client.get_metric_history(self.run_id, key))

    def where(self) -> str | None:
        if not self.run_id:
            return None
        uri = redact(self.uri)
        if self.uri.startswith("http"):
            return f"MLflow: {uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return f"MLflow: run {self.run_id} in {uri}; browse it with `trainlab ui`"
