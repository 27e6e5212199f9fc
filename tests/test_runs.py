"""Reading runs back: `trainlab runs`, `runs show`, `test` by MLflow run, `ui`."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import build_fast_config, write_tiny_npz
from typer.testing import CliRunner

from trainlab.cli import app
from trainlab.experiment import run_experiment

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def train_three(fast_config, npz: Path) -> list:
    base = ("data.name=npz", f"data.path={npz}", "train.epochs=2", "tracking.trackers=[mlflow]", "name=cmp")
    return [run_experiment(fast_config(*base, f"model.arch={arch}", f"seed={seed}"))
            for arch, seed in (("small", 0), ("small", 1), ("medium", 0))]


@pytest.fixture
def three_runs(fast_config, tiny_npz: Path) -> list:
    """Three runs of their own, for a test that adds to the store."""
    return train_three(fast_config, tiny_npz)


@pytest.fixture(scope="module")
def _trained_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    folder = tmp_path_factory.mktemp("three-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        return folder, train_three(build_fast_config, write_tiny_npz(folder))


@pytest.fixture
def shared_runs(_trained_once: tuple[Path, list], monkeypatch: pytest.MonkeyPatch) -> list:
    """The same three runs trained once for the module, for tests that only read the store."""
    folder, outcomes = _trained_once
    monkeypatch.chdir(folder)
    return outcomes


def invoke(*args: str):  # noqa: ANN201
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_runs_lists_filters_sorts_and_groups(shared_runs) -> None:
    ids = [o.run_id for o in shared_runs]
    listed = invoke("runs").output
    assert all(i in listed for i in ids) and "test acc" in listed

    small = json.loads(invoke("runs", "--filter", "params.model = 'small'", "--json").stdout)
    assert sorted(r["run_id"] for r in small) == sorted(ids[:2])

    ordered = json.loads(invoke("runs", "--sort", "test_log_loss", "--asc", "--json").stdout)
    losses = [r["metrics"]["test_log_loss"] for r in ordered]
    assert losses == sorted(losses) and len(losses) == 3

    grouped = invoke("runs", "--group", "model", "--metric", "test_accuracy").output
    accs = [o.test.metrics["accuracy"] for o in shared_runs[:2]]
    import statistics

    assert f"{statistics.fmean(accs):.4f}" in grouped and "medium" in grouped
    filtered = invoke("runs", "--filter", "metrics.test_accuracy > 2").output
    assert "0 runs" in filtered


def test_the_epochs_column_holds_epochs_and_the_job_its_own_column(three_runs, fast_config, tiny_npz: Path) -> None:
    from conftest import interrupt_at

    cfg = fast_config("data.name=npz", f"data.path={tiny_npz}", "train.epochs=3", "tracking.trackers=[mlflow]",
                      "name=cmp")
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, callbacks=interrupt_at(2))  # killed in its second epoch: one epoch recorded
    invoke("compare", three_runs[0].run_id, three_runs[1].run_id, "--record")  # a job that trains nothing
    listed = invoke("runs").output
    lines = {line.split()[1]: line for line in listed.splitlines() if line.startswith("│")}
    killed = next(line for line in lines.values() if " killed " in line)
    assert " train " in killed and " 1/3 " in killed, killed
    for outcome in three_runs:
        assert " train " in lines[outcome.run_id] and " 2 " in lines[outcome.run_id]
    compared = next(line for line in lines.values() if " compare " in line)
    assert "nan" not in listed and "compare" not in compared.split("│")[7], compared  # no job name as epochs
    sorted_ = invoke("runs", "--sort", "test_accuracy").output  # read through MlflowClient: the same epochs
    assert " 1/3 " in next(line for line in sorted_.splitlines() if " killed " in line)


def test_runs_show_one_run(shared_runs) -> None:
    out = invoke("runs", "show", shared_runs[0].run_id).output
    assert "train.epochs" in out and "test_accuracy" in out and "checkpoints/best.pt" in out
    assert "dataset" in out and "git_commit" in out
    details = json.loads(invoke("runs", "show", shared_runs[0].run_id, "--json").stdout)
    assert details["status"] == "FINISHED" and details["params"]["model.arch"] == "small"


@pytest.mark.parametrize(("args", "message"), [
    (["runs", "show", "nope"], "error: no run 'nope' in the MLflow store"),
    (["runs", "--filter", "bogus ==="], "error: invalid --filter 'bogus ===': Invalid clause(s) in filter string"),
    (["runs", "--filter", "metrics.x >"], "error: invalid --filter 'metrics.x >': "),
    (["runs", "--sort", "params.model", "--filter", "params.x = 1"], "error: invalid --filter 'params.x = 1' or --sort"),
    (["runs", "--experiment", "other"], "error: no experiment named 'other'; known: Default, cmp"),
])
def test_runs_bad_input(shared_runs, args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and result.stderr.startswith(message), result.stderr


def test_runs_without_a_store_says_what_to_do() -> None:
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 2 and "no MLflow store at sqlite:///" in result.stderr


@pytest.mark.slow
def test_test_and_predict_by_run_id_from_mlflow_alone(three_runs, tmp_path: Path) -> None:
    first = three_runs[0]
    shutil.rmtree("runs")  # only the MLflow record is left
    tested = json.loads(invoke("test", first.run_id, "--json").stdout)
    assert tested["metrics"]["accuracy"] == first.test.metrics["accuracy"]
    mlflow_id = json.loads(invoke("runs", "show", first.run_id, "--json").stdout)["mlflow_id"]
    assert json.loads(invoke("test", mlflow_id, "--json").stdout)["run_id"] == first.run_id


@pytest.mark.slow
def test_test_record_makes_an_evaluation_run_tagged_with_its_source(three_runs) -> None:
    from mlflow import MlflowClient

    first = three_runs[0]
    tested = json.loads(invoke("test", first.run_id, "--record", "--json").stdout)
    assert tested["metrics"]["accuracy"] == first.test.metrics["accuracy"]
    client = MlflowClient(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    (run,) = client.search_runs([client.get_experiment_by_name("cmp").experiment_id],
                                filter_string=f"tags.evaluated_run = '{first.run_id}'")
    assert run.data.tags["job"] == "evaluate" and run.data.tags["trainlab_run_id"] == tested["recorded_as"]
    assert run.data.tags["precision"] == "fp32"
    assert run.data.metrics["test_accuracy"] == first.test.metrics["accuracy"]
    assert run.info.status == "FINISHED"
    assert {"test_predictions.json", "plots/test_confusion_matrix.png"} <= {
        a.path for d in ("", "plots") for a in client.list_artifacts(run.info.run_id, d or None)}
    listed = json.loads(invoke("runs", "--filter", "tags.job = 'evaluate'", "--json").stdout)
    assert [r["run_id"] for r in listed] == [tested["recorded_as"]]
    assert "(unset)" not in invoke("runs", "--group", "model").output  # groups count trainings only

    int8 = json.loads(invoke("test", first.run_id, "--record", "--int8", "--json").stdout)
    (run,) = client.search_runs([run.info.experiment_id], filter_string=f"tags.trainlab_run_id = '{int8['recorded_as']}'")
    assert int8["precision"] == run.data.tags["precision"] == "int8"
    assert run.data.metrics["test_fp32_accuracy"] == first.test.metrics["accuracy"]
    assert run.data.metrics["test_label_agreement_fp32"] == int8["metrics"]["label_agreement_fp32"] > 0.9

    result = runner.invoke(app, ["test", first.run_id, "--record", "--tracker", "bogus"])
    assert result.exit_code == 2 and "tracking.trackers" in result.stderr and "bogus" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_says_its_url_once_the_page_answers_and_it_shows_the_runs_table(three_runs) -> None:
    port = _free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("trainlab")), "ui", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        starting = proc.stdout.readline() if proc.stdout else ""
        assert starting.startswith("starting MLflow's UI on port"), starting  # said at once: the start is slow
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("MLflow UI for sqlite:///") and line.rstrip().endswith("(Ctrl-C stops it)"), line
        page_url = line.split(" on ")[1].split(" (Ctrl-C")[0]
        # the newest experiment's runs table in the model-training view, not MLflow 3's GenAI overview
        assert page_url.startswith(f"http://127.0.0.1:{port}/#/experiments/") and \
            page_url.endswith("/runs?workflowType=machine_learning"), page_url
        # announced means answering: the first request succeeds, no retry loop
        url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert "cmp" in {e["name"] for e in body["experiments"]}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
        if CHROMIUM.exists():  # what a first-time browser shows at that address: the runs, by name
            sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    page.goto(page_url)
                    for outcome in three_runs:
                        page.get_by_text(outcome.run_id).wait_for(timeout=60_000)
                    assert page.get_by_text("Model training").count() > 0
                finally:
                    browser.close()
        busy = runner.invoke(app, ["ui", "--port", str(port)])  # the port is taken now
        assert busy.exit_code == 2 and busy.stderr.startswith(f"error: port {port} on 127.0.0.1 is already in use"), \
            busy.output
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_fast_listing_reads_mlflows_schema_as_the_client_does(shared_runs) -> None:
    """`trainlab runs` reads a local store's tables itself (MLflow's import alone costs seconds); when an MLflow
    upgrade changes that schema, this fails here, loudly, instead of every listing quietly taking the slow path."""
    from dataclasses import asdict

    from trainlab.run_listing import list_local_runs
    from trainlab.runs import search_runs
    from trainlab.tracking.mlflow_store import client_for, local_store_path, resolve_tracking_uri

    uri = resolve_tracking_uri(None)
    fast = list_local_runs(local_store_path(uri), None, 100)
    assert fast is not None, "MLflow's SQLite schema changed: runs.list_local_runs no longer reads it; fix it"
    client = client_for(uri)
    through_client = [asdict(r) for r in search_runs(client, None, "", None, False, 100)]
    assert [asdict(r) | {"epochs_done": 0} for r in fast] == [r | {"epochs_done": 0} for r in through_client]
    assert all(r.epochs_done == 2 for r in fast)  # read from the epoch metric's latest step
