"""MLflow, the record of truth: a local SQLite store by default, any tracking server by URI.

Only MLflow's official client (``MlflowClient``) is used: no global active run.
The URI is taken from the argument, else ``MLFLOW_TRACKING_URI``, else the
embedded store ``mlruns/mlflow.db`` (artifacts in ``mlruns/artifacts``) in the
working folder, which needs no server.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from trainlab.redaction import redact
from trainlab.tracking.base import MetricPoint, RunInfo, Status, Tracker

if TYPE_CHECKING:
    from trainlab.evaluate import Evaluation

LOCAL_STORE = Path("mlruns")
RUN_ID_TAG = "trainlab_run_id"
_STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
_BATCH = 1000  # MLflow's limit of metrics per log_batch call


def resolve_tracking_uri(setting: str | None = None) -> str:
    """Argument > MLFLOW_TRACKING_URI > the embedded SQLite store in ./mlruns."""
    uri = setting or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(LOCAL_STORE / 'mlflow.db').resolve()}"


def is_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:///") or uri.startswith("file:") or "://" not in uri


def quiet_mlflow_logs() -> None:
    # alembic's migration chatter and MLflow's INFO lines would drown trainlab's own output
    for name in ("alembic", "mlflow", "mlflow.system_metrics", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.ERROR)


def client_for(uri: str):  # noqa: ANN201  (mlflow types stay out of module import)
    from mlflow import MlflowClient

    quiet_mlflow_logs()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def experiment_id(client: Any, name: str, uri: str) -> str:
    """Get or create the experiment; two trainers creating it at once both end up with its id."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if is_local_store(uri):
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
        location = (LOCAL_STORE / "artifacts" / safe).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def find_run(client: Any, run_id: str, experiment_ids: Sequence[str] | None = None) -> Any | None:
    """A run by trainlab run id (tag) or by MLflow run id."""
    from mlflow.exceptions import MlflowException

    ids = list(experiment_ids) if experiment_ids else [e.experiment_id for e in client.search_experiments()]
    if ids:
        runs = client.search_runs(ids, filter_string=f"tags.{RUN_ID_TAG} = '{run_id}'", max_results=1)
        if runs:
            return runs[0]
    if re.fullmatch(r"[0-9a-f]{32}", run_id):
        try:
            return client.get_run(run_id)
        except MlflowException:
            return None
    return None


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, uri: str | None = None, system_metrics_interval: float = 2.0) -> None:
        self._uri_setting = uri
        self._interval = system_metrics_interval
        self.uri = ""
        self.client: Any = None
        self.run_id = ""
        self.experiment_id = ""
        self._monitor: Any = None

    def prepare(self) -> None:
        import mlflow  # noqa: F401  (seconds of import, done while data loads)
        from mlflow.system_metrics import system_metrics_monitor  # noqa: F401

    def start(self, run: RunInfo) -> None:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self.uri = resolve_tracking_uri(self._uri_setting)
        self.client = client_for(self.uri)
        self.experiment_id = experiment_id(self.client, run.experiment, self.uri)
        existing = find_run(self.client, run.run_id, [self.experiment_id]) if run.resumed else None
        if existing is not None:
            self.run_id = existing.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            created = self.client.create_run(self.experiment_id, run_name=run.run_id,
                                             tags={RUN_ID_TAG: run.run_id, "mlflow.source.name": "trainlab"})
            self.run_id = created.info.run_id
        self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=self._interval,
                                             samples_before_logging=1, resume_logging=existing is not None,
                                             tracking_uri=self.uri)
        self._monitor.start()

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

        self._log_points([(0, time.time_ns() // 1_000_000, metrics)])

    def log_dict(self, name: str, data: Any) -> None:
        self.client.log_dict(self.run_id, data, name)

    def log_text(self, name: str, text: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_evaluation(self, ev: "Evaluation", prefix: str) -> None:
        from trainlab.plots import evaluation_figures

        columns, rows = ev.predictions
        self.client.log_table(self.run_id, {c: [r[i] for r in rows] for i, c in enumerate(columns)},
                              f"{prefix}predictions.json")
        self.client.log_table(self.run_id, {k: [c[k] for c in ev.per_class] for k in ev.per_class[0]},
                              f"{prefix}per_class.json")
        self.client.log_dict(self.run_id, {"labels": list(ev.class_names), "matrix": ev.confusion.tolist()},
                             f"{prefix}confusion_matrix.json")
        self.client.log_dict(self.run_id, ev.roc, f"{prefix}roc_curves.json")
        self.client.log_dict(self.run_id, ev.pr, f"{prefix}pr_curves.json")
        for name, fig in evaluation_figures(ev).items():
            self.client.log_figure(self.run_id, fig, f"plots/{prefix}{name}.png")

    def log_model(self, path: Path, metadata: dict[str, Any]) -> None:
        self.client.log_artifact(self.run_id, str(path), "checkpoints")
        self.client.set_tag(self.run_id, "model_artifact", f"checkpoints/{Path(path).name}")

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: Status, error: str | None = None) -> None:
        if self._monitor is not None:
            self._monitor.finish()
        if error:
            self.client.set_tag(self.run_id, "error", redact(error)[:5000])
        self.client.set_terminated(self.run_id, status=_STATUS[status])

    def where(self) -> str | None:
        if not self.run_id:
            return None
        uri = redact(self.uri)
        if self.uri.startswith("http"):
            return f"MLflow: {uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return f"MLflow: run {self.run_id} in {uri}; browse it with `trainlab ui`"
