"""Team scale on loopback: a real PostgreSQL, a real `mlflow server`, three trainers at once.

The trainers run the same code as on a laptop; only MLFLOW_TRACKING_URI changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_server import MISSING, free_port, installed
from postgres_server import postgres as start_postgres

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not installed(), reason=MISSING)]


@pytest.fixture
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1; yields a database URI."""
    with start_postgres(databases=("mlflow", "optuna")) as port:
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"


@pytest.fixture
def mlflow_server(postgres: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path / "mlflow-server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres,
                             "--artifacts-destination", str(tmp_path / "shared-artifacts"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                            stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not come up"
            time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_three_trainers_log_to_one_postgres_backed_server(mlflow_server: str, tiny_npz: Path) -> None:
    from mlflow import MlflowClient

    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    trainers = [
        subprocess.Popen([str(Path(sys.executable).with_name("trainlab")), "train", "--tracker", "mlflow",
                          "data.name=npz", f"data.path={tiny_npz}", "train.epochs=3", "threads=1", f"seed={seed}",
                          "name=team", "tracking.system_metrics_interval=0.5", "--quiet"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in range(3)
    ]
    for proc in trainers:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert f"MLflow: {mlflow_server}/#/experiments/" in out

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("team")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1", "2"]
    for run in runs:
        for key in ("train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_auroc", "lr"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3], key
        assert "best.pt" in {a.path.split("/")[-1] for a in client.list_artifacts(run.info.run_id, "checkpoints")}


def test_two_machines_join_one_sweep_on_postgresql_and_run_every_trial_once(
        mlflow_server: str, postgres: str, tiny_npz: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    storage = postgres.rsplit("/", 1)[0] + "/optuna"
    (tmp_path / "grid.yaml").write_text("method: grid\nmetric: {name: val_accuracy}\nparameters:\n"
                                        "  train.optimizer.lr: {values: [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]}\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    machines = []
    for name in ("machine-a", "machine-b"):  # each in its own folder, as on its own disk
        (tmp_path / name).mkdir()
        machines.append(subprocess.Popen(
            [str(Path(sys.executable).with_name("trainlab")), "sweep", str(tmp_path / "grid.yaml"), "--storage",
             storage, "--tracker", "mlflow", "data.name=npz", f"data.path={tiny_npz}", "train.epochs=2", "threads=1",
             "name=team-sweep"], cwd=tmp_path / name, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    outputs = [proc.communicate(timeout=600) for proc in machines]
    assert [proc.returncode for proc in machines] == [0, 0], [err for _, err in outputs]
    assert sum("joined sweep" in out for out, _ in outputs) == 1  # one leads, the other joins

    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("team-sweep").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("job") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("job") == "trial"]
    assert sorted(r.data.params["train.optimizer.lr"] for r in trials) == \
        ["0.001", "0.002", "0.003", "0.004", "0.005", "0.006"]
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert {r.info.status for r in runs} == {"FINISHED"} and parent.data.metrics["trials_complete"] == 6
    assert len({r.data.tags["trainlab.pid"] for r in trials}) == 2
    for run in trials:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2]


def test_a_sweeps_lead_on_postgresql_is_one_holders_advisory_lock_freed_when_its_process_is_killed(
        postgres: str) -> None:
    from trainlab.experiments.study_storage import Sweep
    from trainlab.experiments.sweep_run import _advisory_lead, lead_lock_key

    storage = postgres.replace("/mlflow", "/optuna")
    sweep = Sweep("sweep-lead-1a2b3c4d", None, {}, storage, Path("."))  # type: ignore[arg-type]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, sqlalchemy\n"
        f"c = sqlalchemy.create_engine({storage!r}).connect()\n"
        f"assert c.execute(sqlalchemy.text('SELECT pg_try_advisory_lock({lead_lock_key(sweep.sweep_id)})')).scalar()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert _advisory_lead(sweep) is None  # another machine's process leads: this one joins
        holder.kill()  # kill -9: the leader's connection ends with it, and so does its lock
        holder.wait()
        deadline = time.monotonic() + 10
        lead = _advisory_lead(sweep)
        while lead is None and time.monotonic() < deadline:
            time.sleep(0.2)
            lead = _advisory_lead(sweep)
        assert lead is not None, "the lock of a killed leader was not freed within 10 s"
        assert _advisory_lead(sweep) is None  # held now by this process's session: a second claim fails
        lead.connection.close()
        again = _advisory_lead(sweep)
        assert again is not None
        again.connection.close()
    finally:
        holder.kill()
