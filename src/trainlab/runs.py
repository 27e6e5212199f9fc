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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from trainlab.errors import CheckpointError, ConfigError, TrackingError, TrainlabError
from trainlab.redaction import redact
from trainlab.tracking.mlflow_backend import (RUN_ID_TAG, client_for, find_run, local_store_path, probe_server,
                                              resolve_tracking_uri, store_error)
from trainlab.tracking.process import process_alive

KEY_METRICS = ("test_accuracy", "test_macro_f1", "test_auroc")


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


@dataclass(frozen=True)
class GroupStats:
    value: str
    runs: int
    mean: float
    std: float  # sample standard deviation; NaN for a single run


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
        return search_runs(client_for(resolved), experiment, filter_string, sort, ascending, limit)


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
    rows = []
    for r in found:
        tags = {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")}
        rows.append(RunRow(
            run_id=r.data.tags.get(RUN_ID_TAG, r.info.run_id), mlflow_id=r.info.run_id,
            experiment=experiments.get(r.info.experiment_id, r.info.experiment_id),
            status=effective_status(r.info.status, tags), start_ms=r.info.start_time or 0,
            params=dict(r.data.params), metrics=dict(r.data.metrics), tags=tags,
        ))
    return rows


_LOCAL_RUNS = """
    SELECT r.run_uuid, r.status, r.start_time, e.name FROM runs r JOIN experiments e USING (experiment_id)
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
    except sqlite3.Error:
        return None  # a damaged or unfamiliar store: MLflow's own client reads it, or says what is wrong
    rows = []
    for run_uuid, status, start_ms, experiment_name in found:
        data = per_run[run_uuid]
        tags = {k: v for k, v in data["tags"].items() if not k.startswith("mlflow.")}
        rows.append(RunRow(run_id=data["tags"].get(RUN_ID_TAG, run_uuid), mlflow_id=run_uuid,
                           experiment=experiment_name, status=effective_status(status, tags), start_ms=start_ms or 0,
                           params=data["params"], metrics=data["metrics"], tags=tags))
    return rows


def group_runs(rows: Sequence[RunRow], param: str, metric: str) -> list[GroupStats]:
    """Mean and sample std of ``metric`` for each value of ``param``, over training runs (evaluation runs
    of `trainlab test --record` would count a model twice; runs without the metric are skipped)."""
    groups: dict[str, list[float]] = {}
    for row in rows:
        if row.tags.get("job") == "evaluate":
            continue
        value = row.metrics.get(metric)
        if value is not None and not math.isnan(value):
            groups.setdefault(row.params.get(param, "(unset)"), []).append(value)
    return [
        GroupStats(key, len(vals), statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else math.nan)
        for key, vals in sorted(groups.items(), key=lambda kv: -statistics.fmean(kv[1]))
    ]


def run_details(ref: str, uri: str | None = None) -> dict[str, Any]:
    """Config (params), final metrics, tags and artifact paths of one run."""
    resolved = existing_store(uri)
    with reading(resolved):
        client = client_for(resolved)
        run = find_run(client, ref)
        if run is None:
            raise ConfigError(f"no run {ref!r} in the MLflow store; list runs with `trainlab runs`")
        artifacts: list[tuple[str, int]] = []

        def walk(path: str | None = None) -> None:
            for item in client.list_artifacts(run.info.run_id, path):
                walk(item.path) if item.is_dir else artifacts.append((item.path, item.file_size or 0))

        walk()
        experiment_name = client.get_experiment(run.info.experiment_id).name
    return {
        "run_id": run.data.tags.get(RUN_ID_TAG, run.info.run_id),
        "mlflow_id": run.info.run_id,
        "experiment": experiment_name,
        "status": effective_status(run.info.status, dict(run.data.tags)),
        "start_ms": run.info.start_time,
        "end_ms": run.info.end_time,
        "params": dict(sorted(run.data.params.items())),
        "metrics": dict(sorted(run.data.metrics.items())),
        "tags": {k: v for k, v in sorted(run.data.tags.items()) if not k.startswith("mlflow.")},
        "artifacts": artifacts,
    }


def locate_checkpoint(ref: str, runs_dir: Path, tracking_uri: str | None = None) -> Path:
    """A checkpoint file, run folder or run id; a run only in MLflow has its best model downloaded."""
    from trainlab.checkpoint import resolve_checkpoint

    try:
        return resolve_checkpoint(ref, runs_dir)
    except CheckpointError as local_error:
        uri = resolve_tracking_uri(tracking_uri)
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            raise local_error from None
        try:
            client = client_for(uri)
            run = find_run(client, ref)
        except Exception as exc:  # an unreachable server must not hide the local error
            raise CheckpointError(f"{local_error} (MLflow at {redact(uri)} could not be asked: {exc})") from None
        if run is None:
            raise CheckpointError(f"{local_error}; MLflow at {redact(uri)} has no such run either") from None
        dest = Path(tempfile.gettempdir()) / "trainlab-models" / run.info.run_id
        dest.mkdir(parents=True, exist_ok=True)
        artifact = run.data.tags.get("model_artifact", "checkpoints/best.pt")
        return Path(client.download_artifacts(run.info.run_id, artifact, str(dest)))
