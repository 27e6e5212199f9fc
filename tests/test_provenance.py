"""What a run records of its code: untracked files, what is generated, and what the repository ignores."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import REPO


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args], cwd=folder,
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train_helper.py").write_text("X = 1\n")
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "code")
    return folder


def test_untracked_files_past_the_budget_are_named_biggest_first(checkout: Path) -> None:
    from trainlab.provenance import UNTRACKED_BUDGET, git_state

    (checkout / "new_layer.py").write_text("Y = 2\n")
    (checkout / "reports").mkdir()
    (checkout / "reports" / "a.html").write_bytes(b"x" * (UNTRACKED_BUDGET // 2 + 10))
    (checkout / "reports" / "b.html").write_bytes(b"x" * (UNTRACKED_BUDGET // 2 + 20))
    (checkout / "mlflow.db").write_bytes(b"x" * (UNTRACKED_BUDGET + 5))
    state = git_state(checkout)
    assert "new_layer.py" in state.diff and state.dirty
    # in name order: mlflow.db alone is over the budget, new_layer.py and a.html fit, b.html no longer does
    assert state.untracked_skipped == ("mlflow.db", "reports/b.html")


@pytest.mark.parametrize(("name", "generated"), [
    ("reports/sweep.html", True), ("mlflow.db", True), ("runs/x/run.json", True), ("sub/wandb/latest", True),
    ("page.html", True), ("model.pt", True), ("big.bin", True), ("table.csv", True), ("src/pkg/layer.py", False),
    ("configs/my.yaml", False), ("configs/sweeps/arch.json", False), ("Makefile", False),
])
def test_generated_files_are_told_from_source(name: str, generated: bool) -> None:
    from trainlab.provenance import looks_generated

    assert looks_generated(name) is generated


def test_the_advice_says_ignore_the_generated_and_commit_the_source() -> None:
    from trainlab.provenance import untracked_advice

    advice = untracked_advice(["mlflow.db", "reports/b.html", "reports/c.html", "big_module.py"])
    assert "add mlflow.db, reports/ to .gitignore" in advice
    assert "source files (big_module.py): commit them" in advice
    assert "commit" not in untracked_advice(["reports/b.html"])


def test_a_run_warns_at_start_when_its_untracked_files_cannot_be_recorded(checkout: Path, fast_config, tiny_npz,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from trainlab.experiment import run_experiment
    from trainlab.provenance import UNTRACKED_BUDGET
    from trainlab.train import TrainCallbacks

    (checkout / "reports").mkdir()
    (checkout / "reports" / "old.html").write_bytes(b"x" * (UNTRACKED_BUDGET + 1))
    monkeypatch.chdir(checkout)
    said: list[str] = []

    class Watch(TrainCallbacks):
        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            said.append("epoch ended")

    run_experiment(fast_config("data.name=npz", f"data.path={tiny_npz}", "train.epochs=1"), warn=said.append,
                   callbacks=Watch())
    warned = [i for i, w in enumerate(said) if "untracked" in w]
    assert len(warned) == 1 and warned[0] < said.index("epoch ended")  # at start, before training
    assert "reports/old.html" in said[warned[0]] and "add reports/ to .gitignore" in said[warned[0]]
    assert "cannot rebuild" in said[warned[0]]


# every path a trainlab command, the README's tour or `mkdocs build` (site/) writes into the project folder
WRITTEN = ["runs/20261203-000000-abcd/run.json", "mlruns/mlflow.db", "mlruns/artifacts/x/model/MLmodel",
           "wandb/offline-run-x/run.wandb", "reports/sweep-x.html", "reports/20261203-000000-abcd.html",
           "build/notebooks/analyse_run.html", "build/notebooks/analyse_run.ipynb", "data/mnist/train.gz",
           ".trainlab/processes/123.lock", "mlflow.db", "mlartifacts/1/x/artifacts/model",
           "notebooks/.ipynb_checkpoints/x.py", "notebooks/analyse_run.ipynb", ".env", "site/index.html"]


def test_the_repository_ignores_everything_trainlab_writes() -> None:
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO, input="\n".join(WRITTEN),
                             capture_output=True, text=True).stdout.split()
    assert sorted(set(WRITTEN) - set(ignored)) == []
