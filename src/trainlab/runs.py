"""Reading runs back from the MLflow record, through ``MlflowClient``: the one resolver of run references
(``Record``: a run folder, a trainlab run id, an MLflow run id, models:/NAME@ALIAS, a sweep, SWEEP#N), a run's
history, artifacts and saved predictions, and the checkpoint a reference names. Listing and grouping runs is
run_listing.py's. A run still marked running whose process is gone is reported as killed. Nothing here prints.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainlab.errors import ArtifactNotFound, CheckpointError, ConfigError, RunNotFound, TrackingError, TrainlabError
from trainlab.redaction import redact
from trainlab.tracking.base import SWEEP_TAG, TRIAL_TAG
from trainlab.tracking.mlflow_store import RUN_ID_TAG, client_for, find_run, probe_server, resolve_tracking_uri, store_error
from trainlab.tracking.process import process_alive

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


def run_folder(ref: str | Path, runs_dir: Path, tracking_uri: str | None = None) -> Path | None:
    """The run folder a reference names on this machine: the folder itself, or a run id under ``runs_dir``;
    given a tracking URI, also any reference the record resolves (an MLflow run id, models:/NAME@ALIAS) to a run
    whose folder is under ``runs_dir``."""
    found = next((f for f in (Path(ref), Path(runs_dir) / str(ref)) if f.is_dir()), None)
    if found is not None or tracking_uri is None:
        return found
    try:
        row = Record(tracking_uri).run(str(ref))
    except TrainlabError:  # no such store or run, or unreachable: the caller says the reference names nothing
        return None
    folder = Path(runs_dir) / row.run_id
    return folder if folder.is_dir() else None


def local_checkpoint(ref: str | Path, runs_dir: Path, which: str = "best.pt") -> Path:
    """A .pt path, a run folder, or a run id (a folder name under ``runs_dir``) -> checkpoint path (``which``:
    checkpoint.BEST or LAST; not imported here, as checkpoint.py imports torch and `trainlab runs` must not)."""
    if Path(ref).is_file():
        return Path(ref)
    folder = run_folder(ref, runs_dir)
    if folder is None:
        raise CheckpointError(f"{str(ref)!r} is not a checkpoint file, a run folder, or a run id under "
                              f"{str(runs_dir)!r}; list runs with `ls runs/`")
    candidate = folder / "checkpoints" / which
    if not candidate.is_file():
        raise CheckpointError(f"run {str(folder)!r} has no {which} checkpoint; it did not finish an epoch")
    return candidate


def locate_checkpoint(ref: str, runs_dir: Path, tracking_uri: str | None = None) -> Path:
    """A checkpoint file, run folder, run id or models:/ reference; a run only in MLflow has its best model
    downloaded."""
    try:
        return local_checkpoint(ref, runs_dir)
    except CheckpointError as local_error:
        # nothing by that name here is a run not found; a run folder without a checkpoint stays a CheckpointError
        missing = CheckpointError if Path(ref).exists() or run_folder(ref, runs_dir) else RunNotFound
        uri = resolve_tracking_uri(tracking_uri)
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            if ref.startswith("models:/"):
                raise RunNotFound(f"no MLflow store at {redact(uri)}, so no registered model {ref!r}; run from the "
                                  "folder you trained in, or pass its store with --tracking-uri") from None
            raise missing(str(local_error)) from None
        try:
            record = Record(uri)
            row = record.run(ref)
        except RunNotFound as not_found:
            if ref.startswith("models:/"):  # a registry reference: what the registry lacks is the news
                raise
            raise missing(f"{local_error}; MLflow at {redact(uri)} has no such run either") from not_found
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

    ``run(ref)`` accepts a run folder, a trainlab run id, an MLflow run id, ``models:/NAME/VERSION``,
    ``models:/NAME/latest`` or ``models:/NAME@ALIAS``; ``runs(ref)`` also accepts a sweep (its finished trials' runs) and one trial of
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
            version = spec.rpartition("/")[2]
            try:
                if alias:
                    found = self.client.get_model_version_by_alias(name, alias)
                elif version.lower() == "latest" and "'" not in name:  # as MLflow reads models:/NAME/latest
                    found = self.client.search_model_versions(f"name = '{name}'", max_results=1,
                                                              order_by=["version_number DESC"])[0]
                else:
                    found = self.client.get_model_version(name, version)
            except (MlflowException, IndexError):
                raise RunNotFound(f"no model version {ref!r} in the registry at {redact(self.uri)}; list them with "
                                  "`trainlab models`") from None
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
