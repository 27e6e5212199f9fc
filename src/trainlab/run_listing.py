"""Runs listed, filtered, sorted and grouped (`trainlab runs`), and one run's details (`runs show`).

Everything goes through ``MlflowClient``, with one exception: a plain listing of
a local store (no filter, no sort) reads MLflow's SQLite tables read-only with
the standard library (``list_local_runs``), because importing MLflow alone takes
seconds on a small CPU and `trainlab runs` must answer in less. Any surprise in that
store (an unknown schema, a damaged file) falls back to the client, and a test
fails loudly when an MLflow upgrade changes the schema. A run still marked running
whose process is gone is reported as killed.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainlab.runs import EPOCH_METRIC, Record, RunRow, effective_status, existing_store, reading, search_runs
from trainlab.tracking.mlflow_store import RUN_ID_TAG, client_for, local_store_path

KEY_METRICS = ("test_accuracy", "test_macro_f1", "test_auroc")


@dataclass(frozen=True)
class GroupStats:
    value: str
    runs: int
    mean: float
    std: float  # sample standard deviation; NaN for a single run
    ci_low: float  # 95% confidence interval of the mean (Student's t); NaN for a single run
    ci_high: float


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
