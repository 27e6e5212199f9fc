"""The error types in errors.py: the exit-code table agrees with the classes and with what the command line returns,
and each type is raised where it means something (a run that is not there, a run another process records, a
server that does not answer, a file a run lacks, Ctrl-C and SIGTERM)."""

from __future__ import annotations

import ast
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from conftest import interrupt_at
from typer.testing import CliRunner

from trainlab import errors
from trainlab.cli import app
from trainlab.cli.common import print_where, user_errors
from trainlab.errors import (
    ArtifactNotFound,
    CannotReproduce,
    ConfigError,
    RecordIncomplete,
    RunInterrupted,
    RunLocked,
    RunNotFound,
    TrackingError,
    TrackingUnavailable,
)
from trainlab.experiments.pair import environment_diff
from trainlab.experiments.sides import Side

runner = CliRunner()
ERRORS_PY = Path(errors.__file__)


def table() -> list[tuple[int, str, int]]:
    """(depth in the tree, class name, exit code) for each row of the table in errors.py's docstring."""
    rows = []
    for line in (errors.__doc__ or "").splitlines():
        found = re.fullmatch(r"    ([ │├└─]*)([A-Z]\w+) +(\d+)  .+", line)
        if found:
            rows.append((len(found[1]) // 4, found[2], int(found[3])))
    return rows


def exit_code(cls: type[BaseException]) -> int:
    return cls().exit_code if cls is RunInterrupted else cls.exit_code  # type: ignore[attr-defined]


def test_the_table_lists_every_error_with_its_exit_code_and_its_parent() -> None:
    rows = table()
    classes = {name: obj for name, obj in vars(errors).items()
               if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__}
    assert [name for _, name, _ in rows] and {name for _, name, _ in rows} == set(classes)
    parents: list[str] = []
    for depth, name, code in rows:
        assert exit_code(classes[name]) == code, name
        parents[depth:] = [name]
        if depth:
            assert classes[name].__bases__ == (classes[parents[depth - 1]],), name
    assert RunInterrupted(sigterm=True).exit_code == 143 and issubclass(RunInterrupted, KeyboardInterrupt)
    # every type a caller used to catch still catches the narrower one
    assert issubclass(RunNotFound, ConfigError) and issubclass(RunLocked, ConfigError)
    assert issubclass(ArtifactNotFound, ConfigError) and issubclass(TrackingUnavailable, TrackingError)


def test_errors_py_is_the_bottom_layer() -> None:
    tree = ast.parse(ERRORS_PY.read_text(encoding="utf-8"))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert imported == ["__future__"], imported


def test_cannot_reproduce_lives_in_errors_py_only() -> None:
    from trainlab.experiments import reproduce

    assert reproduce.CannotReproduce is CannotReproduce
    assert CannotReproduce.__module__ == "trainlab.errors"


# -- each type where it is raised, and the command line's one line and exit code --------------------------


def one_line(result, cls: type[BaseException], message: str) -> None:  # noqa: ANN001
    assert result.exit_code == exit_code(cls), result.output
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output


def test_a_run_that_is_nowhere_is_run_not_found() -> None:
    from trainlab.resume import resume_target
    from trainlab.runs import locate_checkpoint

    with pytest.raises(RunNotFound, match="'NO-SUCH-RUN' is not a checkpoint file"):
        locate_checkpoint("NO-SUCH-RUN", Path("runs"))
    with pytest.raises(RunNotFound, match="'NO-SUCH-RUN' is not a run folder"):
        resume_target("NO-SUCH-RUN", Path("runs"))
    one_line(runner.invoke(app, ["test", "NO-SUCH-RUN"]), RunNotFound, "error: 'NO-SUCH-RUN' is not a checkpoint file")
    one_line(runner.invoke(app, ["train", "--resume", "NO-SUCH-RUN"]), RunNotFound,
             "error: 'NO-SUCH-RUN' is not a run folder")


def test_a_run_folder_without_a_checkpoint_is_still_a_checkpoint_error() -> None:
    from trainlab.errors import CheckpointError
    from trainlab.runs import locate_checkpoint

    Path("runs/half").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="has no best.pt checkpoint") as err:
        locate_checkpoint("half", Path("runs"))
    assert not isinstance(err.value, RunNotFound)


def test_a_sweep_with_no_study_is_run_not_found() -> None:
    from trainlab.experiments.study_open import stored_sweep

    with pytest.raises(RunNotFound, match="no sweep 'sweep-nosuch-1a2b3c4d'"):
        stored_sweep("sweep-nosuch-1a2b3c4d", str(Path("runs/sweeps/journal.log")))


@pytest.fixture
def store(tmp_path: Path):  # noqa: ANN201
    """A local MLflow store holding one finished run of job `test` (an evaluation: no predictions, no model)."""
    from trainlab.runs import Record
    from trainlab.tracking.mlflow_store import RUN_ID_TAG, client_for

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = client_for(uri)
    run = client.create_run(client.create_experiment("errors"), tags={RUN_ID_TAG: "eval-1", "job": "test"})
    client.set_terminated(run.info.run_id)
    return Record(uri)


@pytest.mark.slow
def test_a_store_without_the_run_is_run_not_found_and_a_missing_file_artifact_not_found(store) -> None:  # noqa: ANN001
    from trainlab.experiments.reproduce import plan
    from trainlab.mlflow_model import register

    with pytest.raises(RunNotFound, match="no run 'NO-SUCH-RUN' in the MLflow store"):
        store.run("NO-SUCH-RUN")
    row = store.run("eval-1")
    with pytest.raises(ArtifactNotFound, match="run eval-1 has no artifact 'test_predictions.json'"):
        store.predictions(row)
    with pytest.raises(ArtifactNotFound, match="run eval-1 has no logged MLflow model"):
        register(store, "eval-1", "champion")
    side = Side("eval-1", [row], {})
    assert environment_diff(store, side, side) == {}  # a run without environment.json: nothing to compare, no error
    with pytest.raises(CannotReproduce, match="run eval-1 is a test run"):
        plan(store, "eval-1")
    one_line(runner.invoke(app, ["runs", "show", "NO-SUCH-RUN", "--tracking-uri", store.uri]), RunNotFound,
             "error: no run 'NO-SUCH-RUN' in the MLflow store")
    one_line(runner.invoke(app, ["reproduce", "eval-1", "--tracking-uri", store.uri]), CannotReproduce,
             "error: run eval-1 is a test run; only training runs are reproduced")


def test_a_server_that_does_not_answer_is_tracking_unavailable() -> None:
    from trainlab.runs import existing_store

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(TrackingUnavailable, match="cannot reach the MLflow tracking server"):
        existing_store(uri)
    one_line(runner.invoke(app, ["runs", "--tracking-uri", uri]), TrackingUnavailable,
             f"error: cannot reach the MLflow tracking server at {uri}: connection refused")


def test_ctrl_c_in_a_run_is_run_interrupted_and_a_run_another_process_records_is_run_locked(
        fast_config, tiny_npz: Path) -> None:
    from trainlab.experiment import run_experiment
    from trainlab.run_setup import run_lock

    cfg = fast_config("data.name=npz", f"data.path={tiny_npz}", "train.epochs=3")
    with pytest.raises(RunInterrupted) as first:
        run_experiment(cfg, callbacks=interrupt_at(1))  # in the first epoch: no checkpoint yet
    assert first.value.run_id and not first.value.resumable and first.value.exit_code == 130
    assert str(first.value) == (f"interrupted before the first epoch ended; run {first.value.run_id} is marked "
                                "killed and has no checkpoint to resume from")
    with pytest.raises(RunInterrupted) as second:
        run_experiment(cfg, callbacks=interrupt_at(2))
    run_id = second.value.run_id
    assert second.value.resumable and str(second.value) == (
        f"interrupted; run {run_id} is marked killed. Continue it with `trainlab train --resume {run_id}`")

    run_dir = Path("runs") / str(run_id)
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from filelock import FileLock\n"
                               f"with FileLock({str(run_dir / '.lock')!r}):\n print('held', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(RunLocked, match="is being recorded by another process right now"):
            with run_lock(run_dir, str(run_id)):
                pass
        one_line(runner.invoke(app, ["train", "--resume", str(run_dir), "--quiet"]), RunLocked,
                 f"error: run {run_id!r} is being recorded by another process right now")
    finally:
        holder.communicate("", timeout=30)


def said(capsys: pytest.CaptureFixture[str], raised: BaseException) -> tuple[int, str]:
    """The exit code and stderr of a command body that raises ``raised`` inside user_errors()."""
    with pytest.raises(typer.Exit) as done, user_errors():
        raise raised
    return done.value.exit_code, capsys.readouterr().err


def test_the_command_line_exits_with_the_code_of_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert said(capsys, RunNotFound("no run 'x'")) == (2, "error: no run 'x'\n")
    assert said(capsys, KeyboardInterrupt()) == (130, "interrupted\n")  # Python's own Ctrl-C, outside a run
    assert said(capsys, RunInterrupted(run_id="r1", resumable=True)) == (
        130, "interrupted; run r1 is marked killed. Continue it with `trainlab train --resume r1`\n")
    assert said(capsys, RunInterrupted("interrupted; sweep s is marked killed", sigterm=True)) == (
        143, "interrupted; sweep s is marked killed\n")
    with pytest.raises(typer.Exit) as done, user_errors():
        print_where("r2", ["MLflow: run r2"], {"wandb": "the key was rejected"}, quiet=True)
    assert done.value.exit_code == RecordIncomplete.exit_code == 3
    assert capsys.readouterr().err == ("error: run r2 finished, but not every backend recorded it: wandb (the key was "
                                       "rejected). Exit code 3.\n")


def test_sigterm_is_run_interrupted_with_exit_143(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as done, user_errors():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises as soon as the signal arrives
    assert done.value.exit_code == 143 and capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize(("press", "code"), [("ctrl-c", 130), ("sigterm", 143)])
def test_a_sweep_stopped_mid_trial_says_how_to_continue(monkeypatch: pytest.MonkeyPatch, press: str,
                                                         code: int) -> None:
    from trainlab import failpoints

    def stop(name: str) -> None:
        if name == "mid-epoch":
            if press == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)  # the handler user_errors installed raises
                time.sleep(5)
            raise KeyboardInterrupt

    monkeypatch.setattr(failpoints, "reached", stop)
    Path("grid.yaml").write_text("method: grid\nmetric: {name: val_accuracy}\n"
                                 "parameters: {train.optimizer.lr: {values: [0.01, 0.02]}}\n")
    result = runner.invoke(app, ["sweep", "grid.yaml", "data.name=digits", "train.epochs=2", "threads=1",
                                 "--tracker", "none", "-q"])
    sweep_id = next(w for w in result.output.split() if w.startswith("sweep-")).rstrip(":")
    assert result.exit_code == code, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"interrupted; sweep {sweep_id} is marked killed, and the trial in flight will run again. Continue with the "
        f"same command, or `trainlab sweep --resume {sweep_id}`")
