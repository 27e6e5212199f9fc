"""Sweeps under faults: their journal cut, garbled, emptied or deleted, a full disk mid-write, kill -9 of the whole
process group at every stage of a trial. After each, the same command must finish the sweep with every
configuration trained exactly once (read back from the run folders, the study and MLflow)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

TRAINLAB = str(Path(sys.executable).with_name("trainlab"))
RATES = (0.001, 0.002, 0.003, 0.004)
GRID = {"method": "grid", "metric": {"name": "val_accuracy"}, "parameters": {"train.optimizer.lr": {"values": list(RATES)}}}
ARGS = ["data.name=digits", "train.epochs=2", "threads=1", "train.early_stop.patience=null"]


def sweep(*extra: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    Path("grid.yaml").write_text(yaml.safe_dump(GRID), encoding="utf-8")
    return subprocess.run([TRAINLAB, "sweep", "grid.yaml", *ARGS, *extra], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, start_new_session=True)


def journal() -> Path:
    (path,) = Path("runs").glob("sweep-*/study.journal")
    return path


def trained_once() -> None:
    """Every configuration has exactly one finished run; no run folder was used twice; the study agrees."""
    records = [json.loads(p.read_text()) for p in Path("runs").glob("sweep-*-t*/run.json")]
    finished = Counter(json.loads(r["tags"]["sweep_params"])["train.optimizer.lr"] for r in records
                       if r["status"] == "finished")
    assert finished == Counter({lr: 1 for lr in RATES}), finished
    assert not [r["run_id"] for r in records if r.get("resumed")]  # a trial's run id is never taken again
    sid = journal().parent.name
    shown = subprocess.run([TRAINLAB, "sweep", "show", sid, "--json"], capture_output=True, text=True, timeout=120)
    if shown.returncode == 0:  # a sweep recorded in MLflow: its ranking read back from there
        complete = [r for r in json.loads(shown.stdout)["trials"] if r["state"] == "complete"]
        assert sorted(r["params"]["train.optimizer.lr"] for r in complete) == list(RATES)


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep killed -9 in its third trial (two finished), as a folder to copy."""
    folder = tmp_path_factory.mktemp("killed-sweep")
    here = Path.cwd()
    os.chdir(folder)
    try:
        killed = sweep("--tracker", "none", env={"TRAINLAB_FAILPOINT": "mid-epoch@3"})
        assert killed.returncode == -9, killed.stderr
    finally:
        os.chdir(here)
    return folder


def copy_of(killed_sweep: Path) -> None:
    shutil.copytree(killed_sweep / "runs", "runs")


def one_warning(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert sum(needle in line for line in result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.slow
@pytest.mark.xdist_group("killed-sweep")  # one worker kills the sweep once for them
def test_a_journal_cut_at_random_offsets_resumes_with_every_configuration_once(killed_sweep: Path) -> None:
    whole = next((killed_sweep / "runs").glob("sweep-*/study.journal")).stat().st_size
    for offset in random.Random(24).sample(range(1, whole - 1), 3):
        shutil.rmtree("runs", ignore_errors=True)
        copy_of(killed_sweep)
        with open(journal(), "r+b") as fh:
            fh.truncate(offset)
        resumed = sweep("--tracker", "none")
        assert resumed.returncode == 0, (offset, resumed.stderr)
        assert "Traceback" not in resumed.stderr
        trained_once()


@pytest.mark.slow
@pytest.mark.xdist_group("killed-sweep")  # one worker kills the sweep once for them
@pytest.mark.parametrize("damage", ["garbage line", "cut line then more", "emptied", "deleted", "deleted, its lock left",
                                    "sweep folder deleted"])
def test_a_damaged_or_lost_journal_is_set_aside_and_rebuilt_from_the_runs(killed_sweep: Path, damage: str) -> None:
    copy_of(killed_sweep)
    path = journal()
    lines = path.read_bytes().splitlines(keepends=True)
    if damage == "garbage line":
        path.write_bytes(b"".join(lines[:5]) + b"\xff\xfe\x00 not json\n" + b"".join(lines[5:]))
    elif damage == "cut line then more":
        path.write_bytes(b"".join(lines[:7]) + lines[7][:10] + b"".join(lines[8:]))
    elif damage == "emptied":
        path.write_bytes(b"")
    elif damage == "deleted":
        path.unlink()
    elif damage == "deleted, its lock left":  # Optuna's lock, a symlink to the journal, dangling: it waited forever
        path.unlink()
        Path(f"{path}.lock").symlink_to(path.resolve())
    else:
        shutil.rmtree(path.parent)
    resumed = sweep("--tracker", "none")
    expected = ["rebuilt its study from its trials' run records: 2 trial(s) that ran to an end kept"]
    if "line" in damage:
        expected.append("its journal is damaged at line")
        assert list(path.parent.glob("study.journal.damaged-*"))  # moved aside, not deleted
    one_warning(resumed, *expected)
    trained_once()


@pytest.mark.slow
@pytest.mark.xdist_group("killed-sweep")  # one worker kills the sweep once for them
def test_an_emptied_journal_leaves_no_duplicate_trial_run_in_mlflow(killed_sweep: Path) -> None:
    from mlflow import MlflowClient

    first = sweep("--tracker", "mlflow")
    assert first.returncode == 0, first.stderr
    journal().write_bytes(b"")
    again = sweep("--tracker", "mlflow")
    one_warning(again, "rebuilt its study")
    assert "already finished" in again.stdout
    c = MlflowClient(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    runs = c.search_runs([e.experiment_id for e in c.search_experiments()], "tags.job = 'trial'")
    assert Counter(r.info.run_name for r in runs) == Counter({r.info.run_name: 1 for r in runs})
    assert sorted(r.data.params["train.optimizer.lr"] for r in runs) == [str(lr) for lr in RATES]


FULL_DISK = """
import errno, os, sys
from optuna.storages.journal import JournalFileBackend
appended = 0
original = JournalFileBackend.append_logs
def append_logs(self, logs):
    global appended
    appended += 1
    if appended == int(os.environ["FULL_AT"]):  # half a record reaches the disk, then it is full
        with open(self._file_path, "ab") as fh:
            fh.write(b'{"op_code": 5, "worker_id": "cut')
        raise OSError(errno.ENOSPC, "No space left on device", self._file_path)
    return original(self, logs)
JournalFileBackend.append_logs = append_logs
from trainlab.cli import main
sys.argv = ["trainlab", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("full_at", [3, 12, 25])
def test_a_full_disk_mid_journal_write_is_one_line_and_the_same_command_finishes(full_at: int) -> None:
    Path("grid.yaml").write_text(yaml.safe_dump(GRID), encoding="utf-8")
    full = subprocess.run([sys.executable, "-c", FULL_DISK, "sweep", "grid.yaml", *ARGS, "--tracker", "none"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "FULL_AT": str(full_at)})
    assert full.returncode == 2, full.stderr
    assert full.stderr.count("\n") == 1 and "no space left on device" in full.stderr, full.stderr
    resumed = sweep("--tracker", "none")
    one_warning(resumed, "its journal is damaged at line")
    trained_once()


@pytest.mark.slow
@pytest.mark.parametrize("free_kib", [1400, 2600])
def test_a_disk_filling_mid_sweep_is_a_few_lines_and_the_same_command_trains_each_configuration_once(
        small_disk: Path, free_kib: int) -> None:
    """A real full disk (tmpfs) under the run folders, MLflow's store and the journal: the trial it hit is queued
    again, not failed for good (it was: the same command then ended with one configuration never trained)."""
    os.chdir(small_disk)
    subprocess.run(["fallocate", "-l", f"{9 * 1024 - free_kib}K", "filler"], check=True)
    full = sweep("--tracker", "mlflow")
    lines = full.stderr.strip().splitlines()
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert len(lines) <= 3 and lines[-1].startswith("error: ") and "space" in lines[-1], full.stderr
    Path("filler").unlink()
    resumed = sweep("--tracker", "mlflow")
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    trained_once()


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["trial-asked@2", "mid-epoch@1", "evaluate@1", "tracker-finish@1", "after-folder@1",
                                   "trial-told@1"])
def test_kill_9_of_the_process_group_at_each_stage_then_the_same_command_trains_each_configuration_once(
        stage: str) -> None:
    """A `--workers 2` sweep, its leader and worker killed together (`kill -9 -- -PGID`) when one reaches a stage
    boundary of a trial; the same command again."""
    killed = sweep("--tracker", "mlflow", "--workers", "2",
                   env={"TRAINLAB_FAILPOINT": stage, "TRAINLAB_FAILPOINT_SCOPE": "group"})
    assert killed.returncode == -9, (stage, killed.stderr)
    finished = sweep("--tracker", "mlflow", "--workers", "2")
    assert finished.returncode == 0 and "Traceback" not in finished.stderr, finished.stderr
    trained_once()


@pytest.mark.slow
def test_kill_9_of_the_process_group_at_random_moments_never_hangs_nor_trains_twice() -> None:
    Path("grid.yaml").write_text(yaml.safe_dump(GRID), encoding="utf-8")
    command = [TRAINLAB, "sweep", "grid.yaml", *ARGS, "--tracker", "none", "--workers", "2", "-q"]
    rng = random.Random(9)
    for _ in range(4):
        group = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 9.0))
        if group.poll() is None:
            os.killpg(group.pid, signal.SIGKILL)
        group.wait()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0 and "Traceback" not in finished.stderr, finished.stderr
    trained_once()
