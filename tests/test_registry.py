"""Models as MLflow users expect them: runs:/<id>/model, the Model Registry, aliases, `mlflow models serve`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trainlab.cli import app
from trainlab.experiment import run_experiment
from trainlab.tracking.mlflow_store import resolve_tracking_uri

runner = CliRunner()


def invoke(*args: str, code: int = 0):  # noqa: ANN201
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def mlflow_id(run_id: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(resolve_tracking_uri())
    return client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.trainlab_run_id = '{run_id}'")[0].info.run_id


@pytest.fixture
def trained(fast_config):  # noqa: ANN201
    return run_experiment(fast_config("data.name=digits", "train.epochs=2", "tracking.trackers=[mlflow]"))


def images_file(out, folder: Path, n: int = 5) -> tuple[Path, np.ndarray]:  # noqa: ANN001
    """The first test images, as an IDX file `trainlab predict` reads and as the array the pyfunc model takes."""
    from conftest import idx_bytes

    from trainlab.data import load_data

    _, splits = load_data(out.config.data)
    pixels = splits.test_x[:n]
    path = folder / "images-idx3-ubyte"
    path.write_bytes(idx_bytes(pixels[:, 0]))
    return path, pixels


@pytest.mark.slow
def test_the_logged_model_loads_in_a_fresh_process_and_predicts_as_trainlab_does(trained, tmp_path: Path) -> None:
    path, pixels = images_file(trained, tmp_path)
    predicted = json.loads(invoke("predict", trained.run_id, str(path), "--json").stdout)
    expected = np.array([list(item["probabilities"].values()) for item in predicted])
    np.save(tmp_path / "pixels.npy", pixels)
    script = (f"import mlflow, numpy as np, json; mlflow.set_tracking_uri({resolve_tracking_uri()!r}); "
              f"m = mlflow.pyfunc.load_model('runs:/{mlflow_id(trained.run_id)}/model'); "
              f"out = m.predict(np.load({str(tmp_path / 'pixels.npy')!r})); "
              "print(json.dumps({'columns': list(out.columns), 'probs': out.to_numpy().tolist(), "
              "'inputs': str(m.metadata.get_input_schema())}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["columns"] == list(trained.test.class_names) and "uint8" in found["inputs"]
    assert np.abs(np.array(found["probs"]) - expected).max() < 1e-6


def test_register_an_alias_and_use_it_everywhere_even_without_the_run_folder(trained, fast_config) -> None:
    shown = invoke("register", trained.run_id, "digits-cnn", "--alias", "champion").output
    assert "models:/digits-cnn/1" in shown and "models:/digits-cnn@champion" in shown
    second = run_experiment(fast_config("data.name=digits", "train.epochs=2", "tracking.trackers=[mlflow]", "seed=1"))
    invoke("register", second.run_id, "digits-cnn")
    listed = json.loads(invoke("models", "--json").stdout)
    versions = listed[0]["versions"]
    assert listed[0]["name"] == "digits-cnn" and [v["version"] for v in versions] == ["2", "1"]
    assert versions[1]["aliases"] == ["champion"] and versions[1]["run"] == trained.run_id
    assert float(versions[1]["test_accuracy"]) == pytest.approx(trained.test.metrics["accuracy"], abs=1e-5)

    shutil.rmtree(trained.run_dir)  # the registered model lives in the store alone
    tested = json.loads(invoke("test", "models:/digits-cnn@champion", "--json").stdout)
    assert tested["metrics"]["accuracy"] == pytest.approx(trained.test.metrics["accuracy"])
    same = json.loads(invoke("compare", "models:/digits-cnn@champion", "models:/digits-cnn/2", "--json").stdout)
    assert same["a"]["runs"] == [trained.run_id] and same["b"]["runs"] == [second.run_id]
    missing = invoke("test", "models:/digits-cnn@nobody", code=2).output
    assert "models:/digits-cnn@nobody" in missing and len(missing.strip().splitlines()) == 1


@pytest.mark.parametrize("alias", ["bad alias", "v1", "latest", ""])
def test_a_refused_alias_is_one_line_and_registers_nothing(trained, alias: str) -> None:
    out = invoke("register", trained.run_id, "digits-cnn", "--alias", alias, code=2).output
    assert out.startswith(f"error: --alias {alias!r} is not accepted by the registry: ") and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1
    assert json.loads(invoke("models", "--json").stdout) == []  # no version was created without its alias


def test_train_registers_when_the_config_asks(fast_config) -> None:
    out = invoke("train", "data.name=digits", "train.epochs=1", "threads=1", "-t", "mlflow", "report=false",
                 "register_as=from-config", "-q").output
    assert "registered as models:/from-config/1" in out


def test_a_library_caller_with_register_as_gets_a_registered_version_too(fast_config) -> None:
    from mlflow import MlflowClient

    outcome = run_experiment(fast_config("data.name=digits", "train.epochs=1", "tracking.trackers=[mlflow]",
                                         "register_as=from-library"))
    assert "registered as models:/from-library/1" in outcome.where and not outcome.tracking_failures
    (version,) = MlflowClient(resolve_tracking_uri(None)).search_model_versions("name = 'from-library'")
    assert version.run_id == mlflow_id(outcome.run_id) and version.tags["trainlab_run_id"] == outcome.run_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_trainlab_serve_runs_mlflows_server_and_its_curl_line_answers(trained, tmp_path: Path) -> None:
    path, pixels = images_file(trained, tmp_path, n=2)
    labels = [item["label"] for item in json.loads(invoke("predict", trained.run_id, str(path), "--json").stdout)]
    invoke("register", trained.run_id, "digits-cnn", "--alias", "champion")
    port = _free_port()
    # the venv not activated, no MLFLOW_TRACKING_URI: `trainlab serve` sets up both for MLflow's server
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    server = subprocess.Popen([str(Path(sys.executable).with_name("trainlab")), "serve", "models:/digits-cnn@champion",
                               "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        said = [server.stdout.readline() for _ in range(4)] if server.stdout else []
        assert said.pop(0).startswith("starting MLflow's scoring server for models:/digits-cnn@champion"), said
        assert said[0].startswith(f"serving models:/digits-cnn@champion (run {trained.run_id}) on "
                                  f"http://127.0.0.1:{port}/invocations"), said
        curl = said[2].strip()
        assert curl.startswith(f"curl -s http://127.0.0.1:{port}/invocations "), said
        answer = json.loads(subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=True).stdout)
        assert len(answer["predictions"]) == 2  # the model's input example: two test images
        body = json.dumps({"inputs": pixels.tolist()}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body,
                                         {"Content-Type": "application/json"})
        rows = json.loads(urllib.request.urlopen(request, timeout=30).read())["predictions"]
        assert [max(row, key=row.get) for row in rows] == labels
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not Path("mlflow.db").exists() and not Path("mlartifacts").exists()  # nothing stray where it ran


def test_serve_of_a_model_that_is_not_there_is_one_line(trained) -> None:
    out = invoke("serve", "models:/nobody@champion", code=2).output
    assert "no model version 'models:/nobody@champion'" in out and len(out.strip().splitlines()) == 1
    port = invoke("serve", "models:/nobody@champion", "--port", "99999", code=2).output
    assert "Invalid value for '--port'" in port and "65535" in port and "Traceback" not in port


@pytest.mark.slow
def test_a_sweep_with_register_as_registers_its_best_trials_run_once(digits_sweep) -> None:
    from mlflow import MlflowClient

    sweep = digits_sweep("method: grid\nseeds: 2\nmetric: {name: val_accuracy, goal: maximize}\n"
                         "parameters:\n  train.optimizer.lr: {values: [0.00001, 0.01]}\n", "register_as=swept")
    client = MlflowClient(resolve_tracking_uri(None))
    (version,) = client.search_model_versions("name = 'swept'")  # one version, not one per trial or seed
    shown = json.loads(invoke("sweep", "show", sweep, "--json").stdout)
    best = max(shown["trials"], key=lambda t: t["value"] if t["value"] is not None else -1)
    assert version.tags["trainlab_run_id"] in best["run_ids"] and best["params"]["train.optimizer.lr"] == 0.01
