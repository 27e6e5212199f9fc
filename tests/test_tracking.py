"""Tracking: the dispatcher, and each backend read back with its own official client."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import interrupt_at
from mlflow import MlflowClient
from wandb_reader import offline_run_file, read_offline_run

from trainlab.errors import TrainingError
from trainlab.experiment import run_experiment
from trainlab.resume import resume_experiment, resume_target
from trainlab.tracking import (
    FolderTracker,
    MetricPoint,
    MlflowTracker,
    Run,
    RunInfo,
    Tracker,
    WandbTracker,
    read_run_record,
)
from trainlab.tracking.mlflow_store import RUN_ID_TAG

EPOCH_KEYS = {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1", "val_auroc", "lr",
              "epoch_seconds", "images_per_second"}


def local_client() -> MlflowClient:
    return MlflowClient(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")


def mlflow_run(client: MlflowClient, run_id: str) -> Any:
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiments, filter_string=f"tags.{RUN_ID_TAG} = '{run_id}'")
    return run


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.fixture
def tracked_config(fast_config, tiny_npz: Path):  # noqa: ANN201
    def build(*overrides: str):  # noqa: ANN202
        return fast_config("data.name=npz", f"data.path={tiny_npz}", "tracking.trackers=[mlflow, wandb]",
                           "tracking.system_metrics_interval=0.2", "name=tracked", *overrides)

    return build


# -- the dispatcher ---------------------------------------------------------------------------


class Recorder(Tracker):
    """An in-memory backend; ``fail_on`` makes one method raise, ``block`` makes finish hang."""

    def __init__(self, name: str, fail_on: str | None = None, block: threading.Event | None = None) -> None:
        self.name = name
        self.fail_on = fail_on
        self.block = block
        self.calls: list[tuple[str, Any]] = []

    def _rec(self, method: str, *args: Any) -> None:
        if method == self.fail_on:
            raise ConnectionError(f"{self.name} is down")
        self.calls.append((method, args))

    def start(self, run: RunInfo) -> None: self._rec("start", run.run_id)
    def log_params(self, params: dict[str, str]) -> None: self._rec("log_params", params)
    def set_tags(self, tags: dict[str, str]) -> None: self._rec("set_tags", tags)
    def log_metrics(self, points: Sequence[MetricPoint]) -> None: self._rec("log_metrics", [p.step for p in points])
    def replace_history(self, history: Sequence[dict[str, float]]) -> None: self._rec("replace_history", len(history))
    def log_summary(self, metrics: dict[str, float]) -> None: self._rec("log_summary", metrics)
    def log_dict(self, name: str, data: Any) -> None: self._rec("log_dict", name)
    def log_text(self, name: str, text: str) -> None: self._rec("log_text", text)
    def log_evaluation(self, ev: Any, prefix: str) -> None: self._rec("log_evaluation", prefix)
    def log_model(self, path: Path, metadata: dict[str, Any]) -> None: self._rec("log_model", path)
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: self._rec("log_artifact", path)

    def finish(self, status: str, error: str | None = None) -> None:
        if self.block is not None:
            self.block.wait(10)
        self._rec("finish", (status, error))


def info(tmp_path: Path) -> RunInfo:
    return RunInfo("r1", tmp_path / "r1", "exp")


def test_metrics_are_buffered_until_flush_then_delivered_in_order(tmp_path: Path) -> None:
    rec = Recorder("a")
    with Run(info(tmp_path), [rec]) as run:
        run.log_metrics({"x": 1.0}, step=1)
        run.log_metrics({"x": 2.0}, step=2)
        time.sleep(0.05)
        assert [c for c in rec.calls if c[0] == "log_metrics"] == []  # nothing handed over yet
        run.flush()
        run.log_metrics({"x": 3.0}, step=3)
        run.log_summary({"done": 1.0})  # flushes step 3 first
    assert [c for c in rec.calls if c[0] == "log_metrics"] == [("log_metrics", ([1, 2],)), ("log_metrics", ([3],))]
    assert [c[0] for c in rec.calls][-2:] == ["log_summary", "finish"]
    assert rec.calls[-1] == ("finish", (("finished", None),))


def test_a_failing_backend_is_isolated_and_reported(tmp_path: Path) -> None:
    good, bad, warnings = Recorder("good"), Recorder("bad", fail_on="log_metrics"), []
    with Run(info(tmp_path), [bad, good], warn=warnings.append) as run:
        for step in (1, 2):
            run.log_metrics({"x": float(step)}, step)
            run.flush()
    assert [c[1] for c in good.calls if c[0] == "log_metrics"] == [([1],), ([2],)]
    assert [c[0] for c in bad.calls] == ["start"]  # nothing after its failure, not even finish
    assert run.failures == {"bad": "ConnectionError: bad is down"}
    assert len(warnings) == 1 and "bad stopped recording run r1 (log_metrics failed" in warnings[0]
    assert "training goes on" in warnings[0]


@pytest.mark.parametrize(("exc", "status"), [(ValueError("boom"), "failed"), (KeyboardInterrupt(), "killed")])
def test_an_exception_drains_the_queue_and_sets_the_status(tmp_path: Path, exc: BaseException, status: str) -> None:
    rec = Recorder("a")
    with pytest.raises(type(exc)):
        with Run(info(tmp_path), [rec]) as run:
            run.log_metrics({"x": 1.0}, step=1)  # never flushed by the caller
            raise exc
    assert ("log_metrics", ([1],)) in rec.calls
    assert rec.calls[-1][1][0][0] == status


def test_finish_waits_a_bounded_time_for_a_hung_backend(tmp_path: Path) -> None:
    release = threading.Event()
    hung, warnings = Recorder("hung", block=release), []
    run = Run(info(tmp_path), [hung], finish_timeout=0.3, warn=warnings.append)
    started = time.monotonic()
    with run:
        pass
    assert time.monotonic() - started < 3
    assert warnings[0].startswith("hung did not finish within 0.3 s (")
    assert run.failures == {"hung": "did not finish within 0.3 s"}
    release.set()


@pytest.mark.slow
def test_ctrl_c_waits_seconds_for_a_hung_backend_and_the_run_folder_ends_last(tmp_path: Path) -> None:
    """The user pressed Ctrl-C: a backend stuck on a dead network gets KILL_WAIT_S, not finish_timeout."""
    from trainlab.tracking.run import KILL_WAIT_S

    release = threading.Event()
    hung, folder, warnings = Recorder("hung", block=release), FolderTracker(), []
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with Run(info(tmp_path), [folder, hung], finish_timeout=60, warn=warnings.append):
            raise KeyboardInterrupt
    assert time.monotonic() - started < KILL_WAIT_S + 2
    record = read_run_record(tmp_path / "r1")
    assert record["status"] == "killed" and record["tracking_failures"] == {"hung": "did not finish within 3 s"}
    assert warnings[0].startswith("hung did not finish within 3 s (") and "--resume" not in warnings[0]
    release.set()


def test_the_run_folder_says_finished_only_after_the_others_ended(tmp_path: Path) -> None:
    order: list[str] = []

    class Slow(Recorder):
        def finish(self, status: str, error: str | None = None) -> None:
            time.sleep(0.3)
            order.append(self.name)

    class Folder(FolderTracker):
        def finish(self, status: Any, error: str | None = None) -> None:
            order.append("folder")
            super().finish(status, error)

    with Run(info(tmp_path), [Folder(), Slow("a"), Slow("b")]):
        pass
    assert order[-1] == "folder" and sorted(order[:2]) == ["a", "b"]


# -- every real backend, one contract ----------------------------------------------------------


@pytest.fixture(params=["folder", "mlflow", "wandb"])
def backend(request: pytest.FixtureRequest) -> Tracker:
    return {"folder": FolderTracker(), "mlflow": MlflowTracker(system_metrics_interval=0.2),
            "wandb": WandbTracker(mode="offline", system_metrics_interval=0.2)}[request.param]


def test_every_backend_takes_a_whole_run(backend: Tracker, tracked_config, tmp_path: Path) -> None:
    """The same run through each backend alone, read back with that backend's own reader: ended finished, every
    epoch's validation loss once and in order, the test accuracy the run computed."""
    cfg = tracked_config("tracking.trackers=[]")
    out = run_experiment(cfg, trackers=[backend])
    assert out.tracking_failures == {}
    assert out.where and out.where[0]
    epochs = [e["val_loss"] for e in out.result.history]
    accuracy = out.test.metrics["accuracy"]
    if backend.name == "folder":
        record = read_run_record(out.run_dir)
        history = [json.loads(line) for line in (out.run_dir / "metrics.jsonl").read_text().splitlines() if line]
        summary = json.loads((out.run_dir / "summary.json").read_text())
        assert record["status"] == "finished" and record["run_id"] == out.run_id
        assert [h["val_loss"] for h in history if "val_loss" in h] == epochs
        assert summary["test_accuracy"] == accuracy
    elif backend.name == "mlflow":
        client = local_client()
        run = mlflow_run(client, out.run_id)
        assert run.info.status == "FINISHED"
        assert [m.value for m in client.get_metric_history(run.info.run_id, "val_loss")] == epochs
        assert run.data.metrics["test_accuracy"] == accuracy
    else:
        run = read_offline_run(offline_run_file(Path.cwd(), out.run_id))
        assert run.exit_code == 0 and run.summary["trainlab_status"] == "finished"
        assert [h["val_loss"] for h in run.history if "val_loss" in h] == pytest.approx(epochs)
        assert run.summary["test_accuracy"] == pytest.approx(accuracy)


# -- MLflow, read back through MlflowClient ----------------------------------------------------


@pytest.mark.slow
def test_mlflow_run_read_back(tracked_config) -> None:
    out = run_experiment(tracked_config("tracking.trackers=[mlflow]"))
    client = local_client()
    run = mlflow_run(client, out.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == out.run_id
    # MLflow 3 opens an untagged experiment in its GenAI view, with no metric columns
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.data.params["train.epochs"] == "4" and run.data.params["model"] == "small"
    assert run.data.params["data.name"] == "npz" and run.data.params["dataset"] == "npz"
    tags = run.data.tags
    assert tags["dataset"] == "npz" and tags["model"] == "small" and tags["trainlab_version"]
    assert {"git_commit", "git_dirty", "data_fingerprint"} <= tags.keys()
    for key in EPOCH_KEYS:
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3, 4], key
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert losses == [e["train_loss"] for e in out.result.history]
    assert run.data.metrics["test_accuracy"] == out.test.metrics["accuracy"]
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics)  # MLflow's own sampler
    environment = json.loads(Path(client.download_artifacts(run.info.run_id, "environment.json", "env")).read_text())
    assert environment["cpu_capability"] == __import__("torch").backends.cpu.get_cpu_capability()
    assert environment["cpu_model"] and environment["cpu_count"] and environment["numpy"]
    assert run.data.tags["trainlab.pid"] and run.data.tags["trainlab.host"]  # who recorded it, for liveness
    assert {"checkpoints/best.pt", "checkpoints/last.pt", "config.yaml", "environment.json", "data.json", "git.diff",
            "test_predictions.json", "test_confusion_matrix.json", "test_roc_curves.json", "test_pr_curves.json",
            "plots/test_confusion_matrix.png", "plots/test_roc_pr.png"} <= artifact_paths(
        client, run.info.run_id)
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "test_predictions.json", "dl")).read_text())
    assert len(table["data"]) == 80 and {"true_label", "predicted_label", "p_nw"} <= set(table["columns"])


@pytest.mark.slow
def test_mlflow_status_killed_and_failed(tracked_config) -> None:
    with pytest.raises(KeyboardInterrupt):
        run_experiment(tracked_config("tracking.trackers=[mlflow]"), callbacks=interrupt_at(2), run_id="ctrl-c")
    with pytest.raises(TrainingError, match="diverged"):
        run_experiment(tracked_config("tracking.trackers=[mlflow]", "train.optimizer.name=sgd",
                                      "train.optimizer.lr=1e12", "model.layers=[{type: flatten}, {type: linear, out: 8}]"),
                       run_id="boom")
    client = local_client()
    killed, failed = mlflow_run(client, "ctrl-c"), mlflow_run(client, "boom")
    assert killed.info.status == "KILLED" and killed.data.tags["error"] == "interrupted (KeyboardInterrupt)"
    assert [m.step for m in client.get_metric_history(killed.info.run_id, "val_loss")] == [1]
    assert failed.info.status == "FAILED" and "diverged" in failed.data.tags["error"]


@pytest.mark.slow
def test_resume_relogs_into_the_same_mlflow_run_without_duplicates(tracked_config) -> None:
    cfg = tracked_config("tracking.trackers=[mlflow]")
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, callbacks=interrupt_at(3), run_id="again")
    client = local_client()
    by_mlflow_id = resume_target(mlflow_run(client, "again").info.run_id, Path("runs"))  # the record resolves it
    assert by_mlflow_id.run_id == "again" and by_mlflow_id.run_dir == Path("runs") / "again"
    resume_experiment(resume_target("again", Path("runs")))
    run = mlflow_run(client, "again")  # exactly one MLflow run carries the id
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2, 3, 4]


# -- W&B, read back from the offline run file ---------------------------------------------------


def test_wandb_offline_run_read_back(tracked_config, tmp_path: Path) -> None:
    out = run_experiment(tracked_config("tracking.trackers=[wandb]"))
    wandb_line = next(line for line in out.where if line.startswith("W&B"))
    assert "wandb sync wandb/offline-run-" in wandb_line
    run = read_offline_run(offline_run_file(tmp_path, out.run_id))
    assert run.run_id == out.run_id
    assert run.config["train"]["epochs"] == 4 and run.config["data"]["name"] == "npz"
    epochs = [row for row in run.history if "train_loss" in row]
    assert [row["_step"] for row in epochs] == [1, 2, 3, 4]
    assert [row["val_loss"] for row in epochs] == [e["val_loss"] for e in out.result.history]
    assert any("test_confusion_matrix_table/nrows" in row for row in run.history)  # the chart, on the last row
    assert run.summary["test_accuracy"] == out.test.metrics["accuracy"]
    assert run.summary["trainlab_status"] == "finished" and run.exit_code == 0
    kinds = {a["type"]: a for a in run.artifacts}
    assert kinds["model"]["name"] == f"model-{out.run_id}" and kinds["model"]["files"] == ["best.pt"]
    assert "test_predictions.table.json" in kinds["predictions"]["files"]
    assert "dataset:npz" in run.tags and "model:small" in run.tags
    assert run.stats and "cpu" in set().union(*run.stats)  # W&B's own system sampler


def test_wandb_marks_a_killed_run(tracked_config, tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        run_experiment(tracked_config("tracking.trackers=[wandb]"), callbacks=interrupt_at(2), run_id="wb-killed")
    run = read_offline_run(offline_run_file(tmp_path, "wb-killed"))
    assert run.summary["trainlab_status"] == "killed" and run.exit_code == 130
    assert [row["_step"] for row in run.history if "train_loss" in row] == [1]


# -- backend failures never lose the training ---------------------------------------------------


def test_a_backend_failing_mid_run_leaves_the_others_recording(tracked_config, tmp_path: Path) -> None:
    """MLflow's store becomes unusable after the run started: W&B and the run folder record the run."""
    warnings: list[str] = []

    class BreaksAfterStart(MlflowTracker):
        def log_metrics(self, points: Sequence[MetricPoint]) -> None:
            raise OSError(28, "No space left on device", "mlruns/mlflow.db")

    out = run_experiment(tracked_config(), trackers=[FolderTracker(), BreaksAfterStart(system_metrics_interval=0.2),
                                                     WandbTracker(mode="offline")], warn=warnings.append)
    assert out.test.metrics["accuracy"] > 0.9
    assert set(out.tracking_failures) == {"mlflow"} and "No space left on device" in out.tracking_failures["mlflow"]
    assert any("mlflow stopped recording run" in w for w in warnings)
    assert read_offline_run(offline_run_file(tmp_path, out.run_id)).summary["test_accuracy"] > 0.9
    record = read_run_record(out.run_dir)
    assert record["status"] == "finished" and set(record["tracking_failures"]) == {"mlflow"}


class _Rejecting(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errors": [{"message": "user is not logged in"}]}')

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rejecting_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Rejecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["rejects the key", "is unreachable"])
def test_wandb_online_failure_leaves_mlflow_recording_and_exits_3(tiny_npz: Path, rejecting_server: str,
                                                                   where: str) -> None:
    """A real user's process: the key is rejected (HTTP 401) or the server cannot be reached."""
    import os
    import sys

    env = {**os.environ, "WANDB_API_KEY": "k" * 40, "WANDB_INIT_TIMEOUT": "15",
           "WANDB_BASE_URL": rejecting_server if where == "rejects the key" else "http://127.0.0.1:9"}
    done = subprocess.run([str(Path(sys.executable).with_name("trainlab")), "train", "data.name=npz",
                           f"data.path={tiny_npz}", "train.epochs=2", "threads=1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 3, done.stderr
    # said once, as soon as W&B gave up (before the summary), with the command that uploads the copy later
    assert done.stderr.count("warning: wandb: could not record online (") == 1
    assert "kept an offline copy instead. W&B (offline): wandb/offline-run-" in done.stderr
    assert "upload it later with `wandb sync wandb/offline-run-" in done.stderr
    assert "finished, but not every backend recorded it: wandb (could not record online" in done.stderr
    assert "test accuracy" in done.stdout and "MLflow: run" in done.stdout and "W&B (offline)" in done.stdout
    assert "k" * 40 not in done.stdout + done.stderr
    run_id = next(Path("runs").iterdir()).name
    assert mlflow_run(local_client(), run_id).info.status == "FINISHED"
    copy = read_offline_run(next(Path("wandb").glob(f"offline-run-*-{run_id}-offline-*/run-*.wandb")))
    assert copy.summary["trainlab_status"] == "finished" and copy.summary["test_accuracy"] > 0.5


# -- secrets ------------------------------------------------------------------------------------

CANARY = "canary0123456789abcdef0123456789abcdef42"


@pytest.mark.slow
def test_canary_key_from_dotenv_is_nowhere_in_the_record(tmp_path: Path, tiny_npz: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from trainlab.cli import app

    # a project with uncommitted changes: someone pasted the key into a tracked file
    subprocess.run(["git", "init", "-q"], check=True)
    Path("notes.txt").write_text("hello\n")
    subprocess.run(["git", "add", "notes.txt"], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], check=True)
    Path("notes.txt").write_text(f"hello\nWANDB_API_KEY={CANARY}\n")
    Path(".env").write_text(f"WANDB_API_KEY={CANARY}\nWANDB_MODE=offline\n")
    monkeypatch.delenv("WANDB_MODE", raising=False)

    result = CliRunner().invoke(app, ["train", "data.name=npz", f"data.path={tiny_npz}", "train.epochs=2",
                                      "threads=1", "tracking.system_metrics_interval=0.2"])
    assert result.exit_code == 0, result.output
    import os

    assert os.environ["WANDB_API_KEY"] == CANARY  # .env was read: the key was there to leak
    monkeypatch.delenv("WANDB_API_KEY")
    assert "W&B (offline)" in result.output
    run_dir = next(Path("runs").iterdir())
    assert "***" in (run_dir / "git.diff").read_text()  # the diff was recorded, the key masked

    leaks = []
    for path in Path(".").rglob("*"):
        if path.is_file() and path.name not in (".env", "notes.txt") and ".git" not in path.parts:
            if CANARY.encode() in path.read_bytes():
                leaks.append(str(path))
    assert leaks == []
    assert CANARY not in result.output
    client = local_client()
    run = mlflow_run(client, run_dir.name)
    assert CANARY not in str(run.data.params) + str(run.data.tags)
    diff = Path(client.download_artifacts(run.info.run_id, "git.diff", str(tmp_path / "dl"))).read_text()
    assert "***" in diff and CANARY not in diff
