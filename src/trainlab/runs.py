"""Reading runs back from the MLflow record: list, filter, sort, group, show, fetch a model.

Everything goes through ``MlflowClient``, with one exception: a plain listing of
a local store (no filter, no sort) reads MLflow's SQLite tables read-only with
the standard library, because importing MLflow alone takes ~3 s on a small CPU
and `trainlab runs` must answer in less. Any surprise in that store (an unknown
schema, a damaged file) falls back to the client. A run still marked running
whose process is gone is reported as killed. Nothing here prints.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainlab.errors import ArtifactNotFound, CheckpointError, ConfigError, RunNotFound, TrackingError, TrainlabError
from trainlab.redaction import redact
from trainlab.tracking.base import SWEEP_TAG, TRIAL_TAG
from trainlab.tracking.mlflow_backend import (
    RUN_ID_TAG,
    client_for,
    find_run,
    local_store_path,
    probe_server,
    resolve_tracking_uri,
    store_error,
)
from trainlab.tracking.process import process_alive

KEY_METRICS = ("test_accuracy", "test_macro_f1", "test_auroc")
EPOCH_METRIC = "train_loss"  # logged once per epoch, at step = the epoch


@dataclass(frozen=True)
class RunRow:
    run_id: str  # trainlab's id (the run folder's name)
    mlflow_id: str
    experiment: str
    status: str
    start_ms: int
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    epochs_done: int | None = None  # per-epoch points recorded (a local listing reads it; a run not yet ended)
    end_ms: int | None = None  # when the run ended (None while it runs)


@dataclass(frozen=True)
class GroupStats:
    value: str
    runs: int
    mean: float
    std: float  # sample standard deviation; NaN for a single run
    ci_low: float  # 95% confidence interval of the mean (Student's t); NaN for a single run
    ci_high: float


def existing_store(uri: str | None = None) -> str:
    """The resolved tracking URI; a local store that does not exist yet, or a server that cannot be
    reached, is an error (not a new empty store, not minutes of retries)."""
    resolved = resolve_tracking_uri(uri)
    probe_server(resolved)
    if resolved.startswith("sqlite:///") and not Path(resolved.removeprefix("sqlite:///")).is_file():
        raise TrackingError(
            f"no MLflow store at {resolved}; train a run first (`trainlab train`), or point "
            "--tracking-uri / MLFLOW_TRACKING_URI at your tracking server"
        )
    return resolved


@contextmanager
def reading(uri: str) -> Iterator[None]:
    """Any failure to reach or read the store becomes one line naming it and the cause."""
    try:
        yield
    except TrainlabError:
        raise
    except Exception as exc:  # MlflowException, requests' and SQLAlchemy's errors, sqlite3's
        raise store_error(uri, exc) from None


def effective_status(status: str, tags: dict[str, str]) -> str:
    """RUNNING in the record but its process is gone (kill -9, a crash): KILLED."""
    return "KILLED" if status == "RUNNING" and process_alive(tags) is False else status


def order_clause(sort: str, ascending: bool) -> str:
    """'test_accuracy' -> 'metrics.test_accuracy DESC'; params./attributes. pass through."""
    key = sort if sort.split(".", 1)[0] in ("metrics", "params", "tags", "attributes") else f"metrics.{sort}"
    return f"{key} {'ASC' if ascending else 'DESC'}"


def list_runs(uri: str | None = None, *, experiment: str | None = None, filter_string: str = "",
              sort: str | None = None, ascending: bool = False, limit: int = 100) -> list[RunRow]:
    """Runs, newest first (or by ``sort``), matching ``filter_string`` (MLflow search syntax)."""
    resolved = existing_store(uri)
    db = local_store_path(resolved)
    if db is not None and not filter_string and not sort:
        rows = list_local_runs(db, experiment, limit)
        if rows is not None:
            return rows
    with reading(resolved):
        client = client_for(resolved)
        return [with_epochs_done(client, r) for r in search_runs(client, experiment, filter_string, sort, ascending,
                                                                 limit)]


def with_epochs_done(client: Any, row: RunRow) -> RunRow:
    """A training run that did not end (killed, failed, running) with the epochs it recorded; others as they are."""
    from dataclasses import replace

    if "epochs_run" in row.metrics or row.tags.get("job", "train") not in ("train", "trial"):
        return row
    return replace(row, epochs_done=len(client.get_metric_history(row.mlflow_id, EPOCH_METRIC)))


def search_runs(client: Any, experiment: str | None, filter_string: str, sort: str | None, ascending: bool,
                limit: int) -> list[RunRow]:
    from mlflow.exceptions import MlflowException

    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    if experiment is not None:
        known = sorted(experiments.values())
        experiments = {k: v for k, v in experiments.items() if v == experiment}
        if not experiments:
            raise ConfigError(f"no experiment named {experiment!r}; known: {', '.join(known) or 'none'}")
    if not experiments:
        return []
    try:
        found = client.search_runs(list(experiments), filter_string=filter_string, max_results=limit,
                                   order_by=[order_clause(sort, ascending)] if sort else None)
    except MlflowException as exc:
        if exc.error_code != "INVALID_PARAMETER_VALUE":
            raise
        why = " ".join(str(exc.message).split())
        given = f"--filter {filter_string!r}" + (f" or --sort {sort!r}" if sort else "")
        raise ConfigError(f"invalid {given}: {why}; see https://mlflow.org/docs/latest/search-runs.html "
                          "for the syntax") from None
    return [row_of(r, experiments.get(r.info.experiment_id, r.info.experiment_id)) for r in found]


def row_of(run: Any, experiment: str) -> RunRow:
    """An MLflow run as a RunRow (MLflow's own tags left out)."""
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    return RunRow(run_id=run.data.tags.get(RUN_ID_TAG, run.info.run_id), mlflow_id=run.info.run_id,
                  experiment=experiment, status=effective_status(run.info.status, tags),
                  start_ms=run.info.start_time or 0, params=dict(run.data.params), metrics=dict(run.data.metrics),
                  tags=tags, end_ms=run.info.end_time or None)


_LOCAL_RUNS = """
    SELECT r.run_uuid, r.status, r.start_time, e.name, r.end_time FROM runs r JOIN experiments e USING (experiment_id)
    WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active' {where}
    ORDER BY r.start_time DESC, r.run_uuid LIMIT ?"""


def list_local_runs(db: Path, experiment: str | None, limit: int) -> list[RunRow] | None:
    """The newest runs of a local store, read-only; None when the store is not what this reader knows."""
    try:
        with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=20) as con:
            if experiment is not None and not con.execute(
                    "SELECT 1 FROM experiments WHERE name = ? AND lifecycle_stage = 'active'", (experiment,)).fetchone():
                return None  # MLflow's path says which experiments exist
            args: tuple[Any, ...] = (experiment, limit) if experiment is not None else (limit,)
            found = con.execute(_LOCAL_RUNS.format(where="AND e.name = ?" if experiment else ""), args).fetchall()
            ids = [row[0] for row in found]
            marks = ",".join("?" * len(ids))
            per_run: dict[str, dict[str, dict[str, Any]]] = {i: {"params": {}, "metrics": {}, "tags": {}} for i in ids}
            for table, column in (("params", "value"), ("tags", "value"),
                                  ("latest_metrics", "CASE WHEN is_nan THEN 'nan' ELSE value END")):
                query = f"SELECT run_uuid, key, {column} FROM {table} WHERE run_uuid IN ({marks})"
                for run_uuid, key, value in con.execute(query, ids):
                    kind = "metrics" if table == "latest_metrics" else table
                    per_run[run_uuid][kind][key] = float(value) if kind == "metrics" else value
            epochs = dict(con.execute(f"SELECT run_uuid, step FROM latest_metrics WHERE key = '{EPOCH_METRIC}' "
                                      f"AND run_uuid IN ({marks})", ids).fetchall())
    except sqlite3.Error:
        return None  # a damaged or unfamiliar store: MLflow's own client reads it, or says what is wrong
    rows = []
    for run_uuid, status, start_ms, experiment_name, end_ms in found:
        data = per_run[run_uuid]
        tags = {k: v for k, v in data["tags"].items() if not k.startswith("mlflow.")}
        rows.append(RunRow(run_id=data["tags"].get(RUN_ID_TAG, run_uuid), mlflow_id=run_uuid,
                           experiment=experiment_name, status=effective_status(status, tags), start_ms=start_ms or 0,
                           params=data["params"], metrics=data["metrics"], tags=tags,
                           epochs_done=epochs.get(run_uuid, 0), end_ms=end_ms or None))
    return rows


def group_runs(rows: Sequence[RunRow], param: str, metric: str) -> list[GroupStats]:
    """``metric`` summarised for each value of ``param``, over training runs (evaluation runs of `trainlab test
    --record` would count a model twice; sweeps and comparisons train nothing; runs without the metric are skipped)."""
    groups: dict[str, list[float]] = {}
    for row in rows:
        if row.tags.get("job", "train") not in ("train", "trial"):
            continue
        value = row.metrics.get(metric)
        if value is not None and not math.isnan(value):
            groups.setdefault(row.params.get(param, "(unset)"), []).append(value)
    loss = "loss" in metric
    return [group_stats(key, vals, loss) for key, vals in sorted(groups.items(), key=lambda kv: -statistics.fmean(kv[1]))]


def group_stats(value: str, values: Sequence[float], value_is_loss: bool = False) -> GroupStats:
    """Count, mean, sample std and the t-based 95% interval of the mean (the runs as a sample of seeds)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return GroupStats(value, len(values), mean, math.nan, math.nan, math.nan)
    std = statistics.stdev(values)
    if std == 0:
        return GroupStats(value, len(values), mean, 0.0, mean, mean)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=std / math.sqrt(len(values)))
    if 0 <= min(values) and max(values) <= 1 and not value_is_loss:
        low, high = max(low, 0.0), min(high, 1.0)  # a share (accuracy, F1, AUROC) cannot leave [0, 1]
    return GroupStats(value, len(values), mean, std, float(low), float(high))


def newest_experiment(uri: str) -> str | None:
    """The id of the experiment that holds the newest run (None for a store with no run)."""
    with reading(uri):
        client = client_for(uri)
        ids = [e.experiment_id for e in client.search_experiments()]
        newest = client.search_runs(ids, max_results=1, order_by=["attributes.start_time DESC"]) if ids else []
    return newest[0].info.experiment_id if newest else None


def run_details(ref: str, uri: str | None = None) -> dict[str, Any]:
    """Config (params), final metrics, tags and artifact paths of one run."""
    record = Record(uri)
    row = record.run(ref)
    with reading(record.uri):
        artifacts: list[tuple[str, int]] = []

        def walk(path: str | None = None) -> None:
            for item in record.client.list_artifacts(row.mlflow_id, path):
                walk(item.path) if item.is_dir else artifacts.append((item.path, item.file_size or 0))

        walk()
        end_ms = record.client.get_run(row.mlflow_id).info.end_time
    return {
        "run_id": row.run_id,
        "mlflow_id": row.mlflow_id,
        "experiment": row.experiment,
        "status": row.status,
        "start_ms": row.start_ms,
        "end_ms": end_ms,
        "params": dict(sorted(row.params.items())),
        "metrics": dict(sorted(row.metrics.items())),
        "tags": dict(sorted(row.tags.items())),
        "artifacts": artifacts,
    }


def locate_checkpoint(ref: str, runs_dir: Path, tracking_uri: str | None = None) -> Path:
    """A checkpoint file, run folder or run id; a run only in MLflow has its best model downloaded."""
    from trainlab.checkpoint import resolve_checkpoint

    try:
        return resolve_checkpoint(ref, runs_dir)
    except CheckpointError as local_error:
        # nothing by that name here is a run not found; a run folder without a checkpoint stays a CheckpointError
        missing = CheckpointError if Path(ref).exists() or (Path(runs_dir) / ref).exists() else RunNotFound
        uri = resolve_tracking_uri(tracking_uri)
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            raise missing(str(local_error)) from None
        try:
            record = Record(uri)
            row = record.run(ref)
        except RunNotFound:
            raise missing(f"{local_error}; MLflow at {redact(uri)} has no such run either") from None
        except Exception as exc:  # an unreachable server must not hide the local error
            raise CheckpointError(f"{local_error} (MLflow at {redact(uri)} could not be asked: {exc})") from None
        dest = Path(tempfile.gettempdir()) / "trainlab-models" / row.mlflow_id
        dest.mkdir(parents=True, exist_ok=True)
        artifact = row.tags.get("model_artifact", "checkpoints/best.pt")
        with reading(uri):
            return Path(record.client.download_artifacts(row.mlflow_id, artifact, str(dest)))


# -- the resolver: every experiment command reads runs back through it ----------------------------


@dataclass(frozen=True)
class Predictions:
    """A run's saved test predictions: one row per test example, in the split's order."""

    class_names: tuple[str, ...]
    y_true: Any  # np.ndarray of class indices
    probs: Any  # np.ndarray, (examples, classes)


class Record:
    """An MLflow store opened for reading runs back, locally or on a team server.

    ``run(ref)`` accepts a run folder, a trainlab run id, an MLflow run id, ``models:/NAME/VERSION`` or
    ``models:/NAME@ALIAS``; ``runs(ref)`` also accepts a sweep (its finished trials' runs) and one trial of
    a sweep, ``SWEEP#N`` (its seed repeats). Any failure to read is one line naming the store.
    """

    def __init__(self, uri: str | None = None) -> None:
        self.uri = existing_store(uri)
        with reading(self.uri):
            self.client = client_for(self.uri)
        self._experiments: dict[str, str] = {}

    def _experiment(self, experiment_id: str) -> str:
        if experiment_id not in self._experiments:
            self._experiments[experiment_id] = self.client.get_experiment(experiment_id).name
        return self._experiments[experiment_id]

    def _row(self, run: Any) -> RunRow:
        return row_of(run, self._experiment(run.info.experiment_id))

    def run(self, ref: str) -> RunRow:
        """One run, by any of the references a user has at hand."""
        with reading(self.uri):
            run = self._find(ref)
            if run is None:
                raise RunNotFound(f"no run {ref!r} in the MLflow store at {redact(self.uri)}; give a run id, an "
                                  "MLflow run id, a run folder or models:/NAME@ALIAS (list runs with `trainlab runs`)")
            return self._row(run)

    def _find(self, ref: str) -> Any | None:
        from mlflow.exceptions import MlflowException

        if ref.startswith("models:/"):
            spec = ref.removeprefix("models:/")
            name, alias = spec.split("@", 1) if "@" in spec else (spec.rpartition("/")[0], "")
            try:
                found = (self.client.get_model_version_by_alias(name, alias) if alias
                         else self.client.get_model_version(name, spec.rpartition("/")[2]))
            except MlflowException:
                raise RunNotFound(f"no model version {ref!r} in the registry at {redact(self.uri)}; list them with "
                                  "`mlflow models` or the MLflow UI") from None
            return self.client.get_run(found.run_id)
        if "'" in ref or "\\" in ref:
            return None  # not a run id, and not to be pasted into a search filter
        folder = Path(ref)
        if (folder / "run.json").is_file():
            from trainlab.tracking import read_run_record

            run_id = read_run_record(folder).get("run_id", folder.name)
            found = find_run(self.client, run_id)
            if found is None:
                raise RunNotFound(f"run folder {ref!r} (run {run_id}) is not in the MLflow store at "
                                  f"{redact(self.uri)}; it was recorded without MLflow or into another store: pass "
                                  "that store with --tracking-uri")
            return found
        return find_run(self.client, ref)

    def runs(self, ref: str) -> list[RunRow]:
        """The runs ``ref`` stands for: one run, the seed repeats of a sweep trial, or a sweep's finished trials."""
        sweep, hash_, trial = ref.partition("#")
        if hash_:
            if not trial.isdigit():
                raise ConfigError(f"{ref!r}: a sweep trial is SWEEP#N with N a trial number (see `trainlab sweep "
                                  f"show {sweep}`)")
            found = self.search(f"tags.{SWEEP_TAG} = '{sweep}' and tags.{TRIAL_TAG} = '{trial}'")
            if not found:
                raise RunNotFound(f"no trial {trial} of sweep {sweep!r} in the MLflow store at {redact(self.uri)}; "
                                  f"see `trainlab sweep show {sweep}`")
            return found
        row = self.run(ref)
        if row.tags.get("job") == "sweep":
            return [r for r in self.search(f"tags.{SWEEP_TAG} = '{row.run_id}'") if r.tags.get("job") != "sweep"]
        return [row]

    def search(self, filter_string: str, limit: int = 5000) -> list[RunRow]:
        """Runs of every experiment matching ``filter_string`` (MLflow search syntax), oldest first."""
        with reading(self.uri):
            rows = search_runs(self.client, None, filter_string, "attributes.start_time", True, limit)
        return rows

    def end_ms(self, row: RunRow) -> int | None:
        with reading(self.uri):
            return self.client.get_run(row.mlflow_id).info.end_time

    def history(self, row: RunRow) -> list[dict[str, float]]:
        """The run's per-epoch metrics, one dict per epoch (``step`` = the epoch), as the run folder has them."""
        per_step: dict[int, dict[str, float]] = {}
        with reading(self.uri):
            for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1", "val_auroc",
                        "lr", "epoch_seconds", "images_per_second"):
                if key not in row.metrics:
                    continue
                for point in self.client.get_metric_history(row.mlflow_id, key):
                    if point.step > 0:  # step 0 holds the test summary
                        per_step.setdefault(point.step, {"step": point.step})[key] = point.value
        return [per_step[step] for step in sorted(per_step)]

    def system_metrics(self, row: RunRow, keys: Sequence[str]) -> dict[str, tuple[list[float], list[float]]]:
        """key -> (seconds since the run started, values) for the system metrics MLflow sampled."""
        found = {}
        with reading(self.uri):
            for key in keys:
                if key in row.metrics:
                    points = sorted(self.client.get_metric_history(row.mlflow_id, key), key=lambda p: p.timestamp)
                    found[key] = ([(p.timestamp - row.start_ms) / 1000 for p in points], [p.value for p in points])
        return found

    def log_artifact(self, row: RunRow, path: Path) -> None:
        """Add a file to a recorded run (a finished run takes artifacts too)."""
        with reading(self.uri):
            self.client.log_artifact(row.mlflow_id, str(path))

    def set_tag(self, row: RunRow, key: str, value: str) -> None:
        with reading(self.uri):
            self.client.set_tag(row.mlflow_id, key, value)

    def text_artifact(self, row: RunRow, path: str) -> str:
        """A text file the run logged (git.diff, config.yaml, ...)."""
        with reading(self.uri), tempfile.TemporaryDirectory(prefix="trainlab-record-") as tmp:
            folder = path.rpartition("/")[0] or None
            if path not in {a.path for a in self.client.list_artifacts(row.mlflow_id, folder)}:
                raise ArtifactNotFound(f"run {row.run_id} has no artifact {path!r}: it did not finish, or its job "
                                       f"does not log one (see `trainlab runs show {row.run_id}`)")
            return Path(self.client.download_artifacts(row.mlflow_id, path, tmp)).read_text(encoding="utf-8")

    def json_artifact(self, row: RunRow, path: str) -> Any:
        """A JSON document the run logged (config.yaml is YAML, and read as such)."""
        import json

        import yaml

        text = self.text_artifact(row, path)
        try:
            return yaml.safe_load(text) if path.endswith((".yaml", ".yml")) else json.loads(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise self.damaged(row, path, exc) from None

    def damaged(self, row: RunRow, path: str, exc: BaseException) -> TrackingError:
        why = " ".join(str(exc).split())[:200]
        return TrackingError(f"run {row.run_id}'s {path} in the MLflow store at {redact(self.uri)} is damaged "
                             f"({type(exc).__name__}: {why}); leave that run out, or train it again")

    def predictions(self, row: RunRow) -> Predictions:
        """The run's test predictions (``test_predictions.json``): labels and per-class probabilities."""
        import numpy as np

        path = "test_predictions.json"
        table = self.json_artifact(row, path)
        try:
            columns, data = list(table["columns"]), table["data"]
            names = tuple(c.removeprefix("p_") for c in columns if c.startswith("p_"))
            index = {name: k for k, name in enumerate(names)}
            true_col, first_p = columns.index("true_label"), columns.index(f"p_{names[0]}")
            y_true = np.array([index[str(r[true_col])] for r in data], dtype=np.int64)
            probs = np.array([r[first_p:first_p + len(names)] for r in data], dtype=np.float64).reshape(len(data), -1)
            if not len(data) or probs.shape[1] != len(names) or not np.isfinite(probs).all() or (probs < 0).any():
                raise ValueError(f"{len(data)} rows, {len(names)} classes, probabilities not all finite and >= 0")
        except (KeyError, ValueError, IndexError, TypeError) as exc:
            raise self.damaged(row, path, exc) from None
        # the table keeps 6 decimals, so rows sum to 1 only within 5e-6: scikit-learn's log loss warns on that
        return Predictions(names, y_true, probs / probs.sum(axis=1, keepdims=True))
