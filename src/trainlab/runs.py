"""Reading runs back from the MLflow record: list, filter, sort, group, show, fetch a model.

Everything here goes through ``MlflowClient``; nothing prints.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from trainlab.checkpoint import resolve_checkpoint
from trainlab.errors import CheckpointError, ConfigError, TrackingError
from trainlab.redaction import redact
from trainlab.tracking.mlflow_backend import RUN_ID_TAG, client_for, find_run, resolve_tracking_uri

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
    """The resolved tracking URI; a local store that does not exist yet is an error, not a new empty store."""
    resolved = resolve_tracking_uri(uri)
    if resolved.startswith("sqlite:///") and not Path(resolved.removeprefix("sqlite:///")).is_file():
        raise TrackingError(
            f"no MLflow store at {resolved}; train a run first (`trainlab train`), or point "
            "--tracking-uri / MLFLOW_TRACKING_URI at your tracking server"
        )
    return resolved


def open_client(uri: str | None = None) -> Any:
    return client_for(existing_store(uri))


def order_clause(sort: str, ascending: bool) -> str:
    """'test_accuracy' -> 'metrics.test_accuracy DESC'; params./attributes. pass through."""
    key = sort if sort.split(".", 1)[0] in ("metrics", "params", "tags", "attributes") else f"metrics.{sort}"
    return f"{key} {'ASC' if ascending else 'DESC'}"


def list_runs(client: Any, *, experiment: str | None = None, filter_string: str = "", sort: str | None = None,
              ascending: bool = False, limit: int = 100) -> list[RunRow]:
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
        raise ConfigError(f"invalid --filter or --sort ({filter_string!r}, {sort!r}): {exc.message}") from None
    return [
        RunRow(
            run_id=r.data.tags.get(RUN_ID_TAG, r.info.run_id), mlflow_id=r.info.run_id,
            experiment=experiments.get(r.info.experiment_id, r.info.experiment_id), status=r.info.status,
            start_ms=r.info.start_time or 0, params=dict(r.data.params), metrics=dict(r.data.metrics),
            tags={k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")},
        )
        for r in found
    ]


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


def run_details(client: Any, ref: str) -> dict[str, Any]:
    """Config (params), final metrics, tags and artifact paths of one run."""
    run = find_run(client, ref)
    if run is None:
        raise ConfigError(f"no run {ref!r} in the MLflow store; list runs with `trainlab runs`")
    artifacts: list[tuple[str, int]] = []

    def walk(path: str | None = None) -> None:
        for item in client.list_artifacts(run.info.run_id, path):
            walk(item.path) if item.is_dir else artifacts.append((item.path, item.file_size or 0))

    walk()
    return {
        "run_id": run.data.tags.get(RUN_ID_TAG, run.info.run_id),
        "mlflow_id": run.info.run_id,
        "experiment": client.get_experiment(run.info.experiment_id).name,
        "status": run.info.status,
        "start_ms": run.info.start_time,
        "end_ms": run.info.end_time,
        "params": dict(sorted(run.data.params.items())),
        "metrics": dict(sorted(run.data.metrics.items())),
        "tags": {k: v for k, v in sorted(run.data.tags.items()) if not k.startswith("mlflow.")},
        "artifacts": artifacts,
    }


def locate_checkpoint(ref: str, runs_dir: Path, tracking_uri: str | None = None) -> Path:
    """A checkpoint file, run folder or run id; a run only in MLflow has its best model downloaded."""
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
