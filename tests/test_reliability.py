"""What breaks when real people use trainlab, tried for real: real processes, real signals, real files.

Parallel first use of a new project, kill -9 at every stage of a run, a full disk,
unwritable folders, dead and silent tracking servers. Each test runs the real
console script and reads the record back through MlflowClient (and W&B's files).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from wandb_reader import read_offline_run

from trainlab.tracking import read_history, read_run_record

pytestmark = pytest.mark.slow
TRAINLAB = str(Path(sys.executable).with_name("trainlab"))
EPOCH_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1", "val_auroc", "lr")
TEST_KEYS = ("test_accuracy", "test_macro_f1", "test_auroc", "test_log_loss")


def trainlab(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([TRAINLAB, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def local_client(folder: Path = Path(".")) -> MlflowClient:
    return MlflowClient(f"sqlite:///{(folder / 'mlruns' / 'mlflow.db').resolve()}")


def mlflow_run(client: MlflowClient, run_id: str) -> Any:
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                filter_string=f"tags.trainlab_run_id = '{run_id}'")
    return run


def only_run_dir(folder: Path = Path("runs")) -> Path:
    (run_dir,) = folder.iterdir()
    return run_dir


# -- 1. many trainers at once on a new project ---------------------------------------------------


def test_eight_trainers_started_together_on_a_fresh_folder_all_record(tiny_npz: Path) -> None:
    assert not Path("mlruns").exists()
    procs = [subprocess.Popen([TRAINLAB, "train", "data.name=npz", f"data.path={tiny_npz}", "train.epochs=2",
                               "threads=1", f"seed={seed}", "--tracker", "mlflow", "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in range(8)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    client = local_client()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 8 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        for key in EPOCH_KEYS:
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2], key
    assert not list(Path("mlruns").glob(".mlflow.db.*"))  # no half-made store left behind
    listed = trainlab("runs", "--json")  # the store works afterwards
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 8


# -- 2. one truth about a run's state, whenever kill -9 strikes ------------------------------------


@pytest.fixture
def npz_run(tiny_npz: Path) -> list[str]:
    return ["train", "data.name=npz", f"data.path={tiny_npz}", "train.epochs=3", "threads=1", "name=kills",
            "tracking.system_metrics_interval=0.5", "--quiet"]


def _run_all(*jobs: tuple[list[str], dict[str, str]]) -> list[subprocess.CompletedProcess]:
    """Several trainlab processes (arguments, extra environment) at once: on 2 cores, about half the wall
    time of one after another."""
    procs = [subprocess.Popen([TRAINLAB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **env}) for args, env in jobs]
    outputs = [p.communicate(timeout=600) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


STAGES = {"mid-epoch": "KILLED", "evaluate": "KILLED", "tracker-finish": "FINISHED", "after-folder": "FINISHED"}


def test_kill_9_at_every_stage_then_resume_completes_every_backend(npz_run: list[str]) -> None:
    """kill -9 during an epoch, during the test evaluation, during the trackers' finish, after the folder is
    written; then `--resume`: every backend ends finished, with the uninterrupted run's numbers, no duplicates."""
    runs = _run_all(([*npz_run, "output_dir=reference"], {}),
                    *(([*npz_run, f"output_dir={stage}"], {"TRAINLAB_FAILPOINT": stage}) for stage in STAGES))
    assert runs[0].returncode == 0, runs[0].stderr
    for stage, killed in zip(STAGES, runs[1:]):
        assert killed.returncode == -signal.SIGKILL, (stage, killed.stderr)
    reference = only_run_dir(Path("reference"))
    expected = json.loads((reference / "summary.json").read_text())
    run_dirs = {stage: only_run_dir(Path(stage)) for stage in STAGES}
    listed = {r["run_id"]: r for r in json.loads(trainlab("runs", "--json").stdout)}
    for stage, run_dir in run_dirs.items():
        assert read_run_record(run_dir)["status"] == ("finished" if stage == "after-folder" else "running"), stage
        # the process is gone: `trainlab runs` says killed, not running forever
        assert listed[run_dir.name]["status"] == STAGES[stage], stage

    resumed = _run_all(*((["train", "--resume", str(run_dir)], {}) for run_dir in run_dirs.values()))
    client = local_client()
    strip = lambda h: [(e["step"], e["train_loss"], e["val_loss"], e["val_accuracy"]) for e in h]  # noqa: E731
    for (stage, run_dir), done in zip(run_dirs.items(), resumed):
        assert done.returncode == 0, (stage, done.stderr)
        if stage == "after-folder":
            assert "already finished and every backend recorded its end; nothing to resume" in done.stdout
        record = read_run_record(run_dir)
        assert record["status"] == "finished" and record["error"] is None, stage
        # the same run as one never interrupted: every epoch bit for bit, the same test metrics
        assert strip(read_history(run_dir)) == strip(read_history(reference)), stage
        summary = json.loads((run_dir / "summary.json").read_text())
        assert {k: summary[k] for k in TEST_KEYS} == {k: expected[k] for k in TEST_KEYS}, stage
        # MLflow: finished, every epoch exactly once, one point per test metric, the model there
        run = mlflow_run(client, run_dir.name)
        assert run.info.status == "FINISHED" and "error" not in run.data.tags, stage
        for key in EPOCH_KEYS:
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3], (stage, key)
        for key in TEST_KEYS:
            points = client.get_metric_history(run.info.run_id, key)
            assert [(m.step, m.value) for m in points] == [(0, expected[key])], (stage, key)
        assert "best.pt" in {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run.info.run_id, "checkpoints")}
        # W&B: the newest offline run of this id (folders are named by start time) ended finished, same metrics
        newest = sorted(Path("wandb").glob(f"offline-run-*-{run_dir.name}*/run-*.wandb"), key=lambda p: p.parent.name)
        wandb_run = read_offline_run(newest[-1])
        assert wandb_run.summary.get("trainlab_status") == "finished" and wandb_run.exit_code == 0, (stage, newest)
        assert wandb_run.summary["test_accuracy"] == expected["test_accuracy"], stage


def test_a_run_killed_before_its_first_epoch_ends_is_not_offered_a_resume(tiny_npz: Path) -> None:
    args = ["train", "data.name=npz", f"data.path={tiny_npz}", "train.epochs=1", "threads=1", "--tracker", "mlflow"]
    proc = subprocess.Popen([TRAINLAB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TRAINLAB_FAILPOINT": "mid-epoch"})
    proc.communicate(timeout=300)
    run_dir = only_run_dir()
    resumed = trainlab("train", "--resume", run_dir.name)
    assert resumed.returncode == 2 and resumed.stderr.count("\n") == 1
    assert resumed.stderr.startswith(f"error: run '{run_dir.name}' has no last checkpoint: it ended before its "
                                     "first epoch did, so there is nothing to continue from")
    assert "--resume" not in resumed.stderr

    # Ctrl-C in the first epoch (the process paused there by a failpoint, so never a moment later): killed, and
    # the message does not suggest resuming either (test_cli covers a Ctrl-C after an epoch: resume offered)
    proc = subprocess.Popen([TRAINLAB, *args, "output_dir=ctrl-c", "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TRAINLAB_FAILPOINT": "mid-epoch", "TRAINLAB_FAILPOINT_ACTION": "stop"})
    wait_stopped(proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "has no checkpoint to resume from" in err, err
    assert "--resume" not in err and not list(Path("ctrl-c").glob("*/checkpoints/last.pt"))


def wait_stopped(proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``proc`` has stopped itself (state T in /proc), or fail."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert proc.poll() is None and time.monotonic() < deadline, "the process never reached its failpoint"
        time.sleep(0.05)


def test_a_resumed_run_drops_the_error_of_its_interrupted_attempt(tiny_npz: Path) -> None:
    proc = subprocess.Popen([TRAINLAB, "train", "data.name=npz", f"data.path={tiny_npz}", "train.epochs=150",
                             "threads=1", "--tracker", "mlflow", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(Path("runs").glob("*/checkpoints/last.pt")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    run_dir = only_run_dir()
    client = local_client()
    assert mlflow_run(client, run_dir.name).data.tags["error"] == "interrupted (KeyboardInterrupt)"
    # finish quickly: the resumed attempt trains the remaining epochs of a 300-epoch run; cut it short on disk
    resumed = subprocess.Popen([TRAINLAB, "train", "--resume", run_dir.name, "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while mlflow_run(client, run_dir.name).info.status != "RUNNING":
        assert resumed.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    assert "error" not in mlflow_run(client, run_dir.name).data.tags  # cleared as soon as the attempt starts
    again = trainlab("train", "--resume", run_dir.name)  # a second process on a live run is refused
    assert again.returncode == 2 and ("is still running" in again.stderr or "is being recorded" in again.stderr)
    resumed.send_signal(signal.SIGTERM)
    resumed.communicate(timeout=60)


# -- 4. storage faults --------------------------------------------------------------------------


@pytest.mark.parametrize("broken", ["runs", "mlruns", "wandb"])
def test_an_unwritable_folder_is_refused_before_anything_is_created(tiny_npz: Path, broken: str) -> None:
    Path(broken).write_text("a file where a folder should be")
    before = sorted(p.name for p in Path(".").iterdir())
    done = trainlab("train", "data.name=npz", f"data.path={tiny_npz}", "threads=1")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"{broken} is a file, not a folder" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in Path(".").iterdir()) == before


def test_a_disk_that_fills_during_training_fails_the_run_in_one_line_and_resume_finishes_it(
        small_disk: Path, tmp_path: Path) -> None:
    import numpy as np
    from conftest import make_images

    x, y = make_images(60, classes=4, size=28)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    os.chdir(small_disk)
    # `medium`'s checkpoints are 1.8 MiB (best) and 5.4 MiB (last, with Adam's state), the store 0.9 MiB: epoch 1
    # fits in 9 MiB (8.1 at its peak), epoch 2 does not (its atomic write of a new checkpoint needs 9.9)
    args = ["train", "data.name=npz", f"data.path={tmp_path / 'data.npz'}", "model.arch=medium", "train.epochs=2",
            "threads=1", "--tracker", "mlflow"]
    done = trainlab(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    run_dir = only_run_dir()
    assert lines[0].startswith("error: no space left on device while writing runs/") or \
        lines[0].startswith(f"error: no space left on device while writing {small_disk}")
    assert f"continue with `trainlab train --resume {run_dir.name}`" in lines[0]
    assert read_run_record(run_dir)["status"] == "failed"
    assert not list(run_dir.rglob("*.part"))  # no half-written checkpoint
    assert trainlab("runs").returncode == 0  # the store stays usable

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space freed
    resumed = trainlab("train", "--resume", run_dir.name, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert read_run_record(run_dir)["status"] == "finished"
    run = mlflow_run(local_client(), run_dir.name)
    assert run.info.status == "FINISHED" and "error" not in run.data.tags


@pytest.mark.slow
@pytest.mark.parametrize("free_kib", [400, 700, 1000, 1600])
def test_a_disk_filling_at_any_moment_with_every_backend_recording_is_a_few_lines_and_no_traceback(
        small_disk: Path, free_kib: int) -> None:
    """MLflow's SQLite store, W&B's files, the run folder and the report fill the disk at different moments:
    a line per backend that stopped, then the error (it printed 204 lines with SQLAlchemy tracebacks)."""
    os.chdir(small_disk)
    subprocess.run(["fallocate", "-l", f"{9 * 1024 - free_kib}K", "filler"], check=True)
    done = trainlab("train", "data.name=digits", "train.epochs=3", "threads=1", env={"WANDB_MODE": "offline"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode in (2, 3) and "Traceback" not in done.stderr and "Logging error" not in done.stderr
    assert 1 <= len(lines) <= 4 and lines[-1].startswith("error: "), done.stderr
    assert all(line.startswith("warning: ") and "stopped recording" in line for line in lines[:-1]), done.stderr


@pytest.mark.slow
def test_the_mlflow_store_deleted_mid_run_is_two_lines(tiny_npz: Path) -> None:
    """216 lines with tracebacks before; now: MLflow stopped recording, and the run says which backend missed it."""
    run = subprocess.Popen([TRAINLAB, "train", "data.name=npz", f"data.path={tiny_npz}", "train.epochs=150",
                            "threads=1", "--tracker", "mlflow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    deadline = time.monotonic() + 120
    while not list(Path("runs").glob("*/metrics.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.2)
    shutil.rmtree("mlruns")
    _, stderr = run.communicate(timeout=300)
    lines = stderr.strip().splitlines()
    assert run.returncode == 3 and "Traceback" not in stderr and len(lines) <= 2, stderr
    assert lines[-1].startswith(f"error: run {only_run_dir().name} finished, but not every backend recorded it: mlflow")
    assert read_run_record(only_run_dir())["status"] == "finished"


# -- 6. dead and silent tracking servers ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


def test_runs_against_a_refused_or_silent_server_answers_in_seconds(silent_server: str) -> None:
    refused = f"http://user:hunter2secret@127.0.0.1:{_free_port()}"
    for uri, budget, cause in ((refused, 5, "connection refused"), (silent_server, 15, "no answer within 5 s")):
        started = time.monotonic()
        done = trainlab("runs", env={"MLFLOW_TRACKING_URI": uri})
        took = time.monotonic() - started
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("error: cannot reach the MLflow tracking server at http://") and cause in done.stderr
        assert "hunter2secret" not in done.stderr
        assert took < budget, f"{uri}: {took:.1f} s"


def test_a_damaged_store_gets_one_line_naming_it() -> None:
    Path("mlruns").mkdir()
    Path("mlruns/mlflow.db").write_bytes(os.urandom(4096))
    done = trainlab("runs")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    db = Path("mlruns/mlflow.db").resolve()
    assert done.stderr.startswith(f"error: the MLflow store {db} is damaged")
    assert f"mv {db} {db}.broken" in done.stderr


def test_training_with_a_dead_server_waits_seconds_at_the_end_and_ctrl_c_is_prompt(
        tiny_npz: Path, silent_server: str) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    args = ["train", "data.name=npz", f"data.path={tiny_npz}", "train.epochs=2", "threads=1", "--tracker", "mlflow"]
    done = trainlab(*args, env={"MLFLOW_TRACKING_URI": dead})
    assert done.returncode == 3, done.stderr
    assert "connection refused" in done.stderr.lower()
    summary = json.loads(next(Path("runs").glob("*/summary.json")).read_text())
    assert summary["test_accuracy"] > 0.5  # the training was not lost

    # a silent server: found dead at start (one request, 5 s), not waited for at the end; Ctrl-C is prompt
    proc = subprocess.Popen([TRAINLAB, *args, "train.epochs=400", "output_dir=hung", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MLFLOW_TRACKING_URI": silent_server})
    deadline = time.monotonic() + 120
    while not list(Path("hung").glob("*/checkpoints/last.pt")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 5, err
    assert proc.returncode == 130 and "is marked killed" in err


def test_a_process_in_another_container_is_told_dead_or_alive_by_the_lock_it_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainlab.tracking import process

    show = "import json, sys, time; from trainlab.tracking.process import this_process; " \
           "print(json.dumps(this_process()), flush=True); time.sleep(float(sys.argv[1]))"
    child = subprocess.Popen([sys.executable, "-c", show, "120"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    record = json.loads(child.stdout.readline())
    # seen from another container: another host name, and its pid means nothing here
    monkeypatch.setattr(process.socket, "gethostname", lambda: "another-container")
    assert process.process_alive(record) is True
    assert process.process_alive({**record, process.BOOT_TAG: "another-machine"}) is None
    assert process.process_alive({**record, process.LOCK_ID_TAG: "0:0"}) is None  # another volume's file
    child.kill()  # SIGKILL: nothing of the process's own runs, the kernel lets go of its lock
    child.wait()
    assert process.process_alive(record) is False
    # a process that ends cleanly takes its lock file with it
    done = subprocess.run([sys.executable, "-c", show, "0"], cwd=tmp_path, capture_output=True, text=True)
    ended = json.loads(done.stdout)
    assert not Path(ended[process.LOCK_TAG]).exists() and process.process_alive(ended) is None


@pytest.mark.slow
def test_the_mlflow_recording_process_killed_mid_run_is_one_warning_and_resume_completes_its_record(
        tiny_npz: Path) -> None:
    """`trainlab train` records MLflow from a child process: killed mid-run, the training goes on to its report page
    (a traceback and exit 1 before: the page asked the dead child for its system metrics), exit 3 names the backend
    and the `--resume` that completes its record, which it does."""
    import psutil

    proc = subprocess.Popen([TRAINLAB, "train", "data.name=npz", f"data.path={tiny_npz}", "train.epochs=3",
                             "threads=1", "--tracker", "mlflow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "TRAINLAB_FAILPOINT": "mid-epoch",
                                            "TRAINLAB_FAILPOINT_ACTION": "stop"})
    wait_stopped(proc)
    (child,) = [c for c in psutil.Process(proc.pid).children() if "trainlab.tracking.child" in " ".join(c.cmdline())]
    child.kill()  # a zombie until its stopped parent reaps it
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=300)
    run_dir = only_run_dir()
    assert proc.returncode == 3 and "Traceback" not in err, err
    assert "mlflow stopped recording" in err and f"`trainlab train --resume {run_dir.name}` completes its record" in err
    assert (run_dir / "report.html").is_file()
    assert "mlflow" in read_run_record(run_dir)["tracking_failures"]

    resumed = trainlab("train", "--resume", run_dir.name, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    run = mlflow_run(local_client(), run_dir.name)
    assert run.info.status == "FINISHED" and set(TEST_KEYS) <= set(run.data.metrics)
    assert read_run_record(run_dir)["tracking_failures"] == {}
