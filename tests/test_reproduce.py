"""`trainlab reproduce`: a recorded run rebuilt from its commit (and its uncommitted changes) and checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, make_images

pytestmark = pytest.mark.slow
MAIN = "import sys; from trainlab.cli import main; sys.argv[0] = 'trainlab'; main()"


def git(project: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args], cwd=project,
                          capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A repository holding trainlab's source, as a team's checkout does; commands run its code."""
    folder = tmp_path / "project"
    shutil.copytree(REPO / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / ".gitignore", folder / ".gitignore")
    x, y = make_images(40)
    np.savez(folder / "tiny.npz", x=x, y=y, x_test=make_images(10, seed=1)[0], y_test=make_images(10, seed=1)[1])
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "the code")
    return folder


def trainlab(project: Path, *args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    done = subprocess.run([sys.executable, "-c", MAIN, *args], cwd=project, env=env, capture_output=True, text=True)
    if code is not None:
        assert done.returncode == code, done.stdout + done.stderr
    return done


def train(project: Path, *overrides: str) -> str:
    trainlab(project, "train", "data.name=npz", "data.path=tiny.npz", "train.epochs=3", "threads=2", "-t", "mlflow",
             "report=false", "-q", *overrides)
    return sorted((project / "runs").iterdir())[-1].name


def test_a_fresh_run_reproduces_identical_and_is_recorded(project: Path) -> None:
    run = train(project)
    done = trainlab(project, "reproduce", run, "--json", "-t", "mlflow")
    found = json.loads(done.stdout)
    assert found["verdict"] == "identical" and found["label_agreement"] == 1.0
    assert found["largest_probability_difference"] == 0 and all(v == 0 for v in found["largest"].values())
    assert found["largest"]["val_loss"] == 0 and "test_accuracy" in found["largest"]
    assert git(project, "worktree", "list").count("\n") == 1  # the temporary worktree is gone

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    kept = client.search_runs(ids, "tags.job = 'reproduce'")[0]
    assert kept.data.tags["reproduces"] == run and kept.data.tags["verdict"] == "identical"
    original = client.search_runs(ids, f"tags.trainlab_run_id = '{run}'")[0]
    assert original.data.tags["reproduced"].startswith("identical")


def test_a_run_on_two_processes_is_trained_again_on_two_and_reproduces_identical(project: Path) -> None:
    run = train(project, "threads=1", "--nproc", "2")
    found = json.loads(trainlab(project, "reproduce", run, "--json").stdout)
    assert found["verdict"] == "identical" and found["largest_probability_difference"] == 0, found


def test_a_run_from_a_dirty_tree_reproduces_identical_and_the_tree_is_untouched(project: Path) -> None:
    models = project / "src" / "trainlab" / "catalog.py"
    committed = models.read_text()
    models.write_text(committed.replace('"small": (*_conv_block(16)', '"small": (*_conv_block(12)'))
    (project / "src" / "trainlab" / "helper.py").write_text("ANSWER = 42\n")  # untracked, recorded too
    run = train(project)
    models.write_text(committed)  # the checkout moves on
    before = git(project, "status", "--porcelain")
    found = json.loads(trainlab(project, "reproduce", run, "--json", "--no-record").stdout)
    assert found["verdict"] == "identical" and found["dirty"] is True
    assert git(project, "status", "--porcelain") == before and models.read_text() == committed
    assert git(project, "worktree", "list").count("\n") == 1


def test_a_changed_data_file_is_refused_naming_it(project: Path) -> None:
    run = train(project)
    data = bytearray((project / "tiny.npz").read_bytes())
    data[-100] ^= 0xFF
    (project / "tiny.npz").write_bytes(bytes(data))
    done = trainlab(project, "reproduce", run, code=2)
    assert "tiny.npz" in done.stderr and "SHA-256" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_commit_missing_here_is_refused(project: Path, tmp_path: Path) -> None:
    run = train(project)
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    git(other, "commit", "-q", "--allow-empty", "-m", "another history")
    done = trainlab(project, "reproduce", run, "--repo", str(other), code=2)
    assert "is not in this repository" in done.stderr and "git fetch" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    dry = trainlab(project, "reproduce", run, "--dry-run")
    assert "can be reproduced here" in dry.stdout


def test_another_thread_count_is_warned_and_explains_the_verdict(project: Path) -> None:
    run = train(project)
    done = trainlab(project, "reproduce", run, "--threads", "1", "--json", "--no-record", code=None)
    found = json.loads(done.stdout)
    assert any("threads differ: recorded 2, reproduced with 1" in w for w in found["warnings"])
    assert done.returncode == (0 if found["verdict"] in ("identical", "within tolerance") else 1)
    if found["verdict"] != "identical":
        assert "a bit-exact match was not expected" in found["sentence"] and "threads" in found["sentence"]


def test_the_verdicts_against_a_recorded_run(fast_config, tmp_path: Path) -> None:
    """identical / within rtol / within the seed spread of the config's recorded seeds / different, and where."""
    from trainlab.experiment import run_experiment
    from trainlab.experiments.reproduce import Plan, compare_with_record
    from trainlab.runs import Record

    runs = [run_experiment(fast_config("data.name=digits", "train.epochs=2", "tracking.trackers=[mlflow]", f"seed={s}"))
            for s in (0, 1, 2)]
    record = Record()
    row = record.run(runs[0].run_id)
    plan = Plan(row, "commit", "", {}, 1)

    def verdict(change: dict[str, float], epoch_change: dict[str, float] | None = None):  # noqa: ANN202
        folder = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(runs[0].run_dir, folder)
        summary = json.loads((folder / "summary.json").read_text())
        (folder / "summary.json").write_text(json.dumps({k: v + change.get(k, 0.0) for k, v in summary.items()}))
        if epoch_change:
            lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
            lines[-1] = {k: v + epoch_change.get(k, 0.0) for k, v in lines[-1].items()}
            (folder / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        return compare_with_record(record, plan, folder)

    assert verdict({}).verdict == "identical"
    tiny = verdict({"test_log_loss": 1e-9})
    assert tiny.verdict == "within tolerance" and "rtol" in tiny.tolerance
    accuracies = [o.test.metrics["accuracy"] for o in runs]
    spread = float(np.std(accuracies, ddof=1))
    if spread > 0:
        seeds = verdict({"test_accuracy": spread / 2}, {"val_loss": 1e-3})
        assert seeds.verdict == "within tolerance" and "seed spread of 3 recorded runs" in seeds.tolerance
    far = verdict({"test_accuracy": 0.5}, {"val_loss": 0.1})
    assert far.verdict == "different" and far.exit_code == 1
    assert far.first_divergence.metric == "val_loss" and far.first_divergence.epoch == len(runs[0].result.history)
