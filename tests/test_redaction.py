"""No credential is recorded or printed, wherever the user typed it."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Server
from typer.testing import CliRunner

from trainlab.cli import app
from trainlab.data import idx as idx_module
from trainlab.redaction import MASK, holds_secret, redact, redact_mapping

CANARY = "canary7f3e9b21d4c8a6e5f0b1c2d3"
runner = CliRunner()


@pytest.mark.parametrize(("text", "masked"), [
    (f"https://user:{CANARY}@mirror.example/data/", "https://***@mirror.example/data/"),
    (f"http://host/x?api_key={CANARY}&page=2", "http://host/x?api_key=***&page=2"),
    (f"WANDB_API_KEY={CANARY}", "WANDB_API_KEY=***"),
    (f'{{"auth_token": "{CANARY}"}}', '{"auth_token": "***"}'),
    (f"password: {CANARY}", "password: ***"),
    (f"run --token {CANARY} --lr 3", "run --token *** --lr 3"),  # a command line written as text
    (f'train --wandb-api-key "{CANARY} x"', "train --wandb-api-key ***"),
    ("train.optimizer.lr=0.01 seed: 3", "train.optimizer.lr=0.01 seed: 3"),  # ordinary values stay
    ("pass --token -v; my-token value", "pass --token -v; my-token value"),
    # a message quoting a value that holds "key": its words stay (it read "'monkey': *** should be")
    ("model.arch = 'monkey': input should be 'small'", "model.arch = 'monkey': input should be 'small'"),
    (f"{{'api_key': '{CANARY}'}}", "{'api_key': '***'}"),
    # a word that merely ends in "key" is not a credential's name: a Hive-style folder keeps its path (it read
    # "/data/turkey=***", and `trainlab test` could not find the data again)
    ("data.path=/data/turkey=2024/photos monkey=1", "data.path=/data/turkey=2024/photos monkey=1"),
    (f"apikey={CANARY} authToken: {CANARY}", "apikey=*** authToken: ***"),
    # help text naming the form of an override stays readable (it read "is not key=***")
    ("override 'photo.yaml' is not key=value; write e.g. train.epochs=5",
     "override 'photo.yaml' is not key=value; write e.g. train.epochs=5"),
])
def test_redact_masks_credentials_in_text(text: str, masked: str) -> None:
    assert redact(text) == masked
    assert holds_secret(text) == (text != masked)


def test_redact_mapping_masks_values_of_secret_named_keys() -> None:
    data = {"data": {"mirror": f"https://u:{CANARY}@m/", "path": "/d"}, "hf_token": CANARY, "lr": 0.1,
            "layers": [{"api_key": CANARY}]}
    assert redact_mapping(data) == {"data": {"mirror": "https://***@m/", "path": "/d"}, "hf_token": MASK, "lr": 0.1,
                                    "layers": [{"api_key": MASK}]}


@pytest.mark.parametrize("override", [
    f"name=exp-https://u:{CANARY}@host/x",  # the experiment name: a folder, an MLflow experiment, a W&B group
    f"output_dir=out/token={CANARY}",
    f"data.data_dir=data/api_key={CANARY}",
    f"register_as=model-token={CANARY}",  # a registered model's name
])
def test_a_credential_in_an_identifier_is_refused(override: str) -> None:
    result = runner.invoke(app, ["train", override, "--tracker", "none"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: invalid config: ") and "holds a credential" in result.stderr
    assert result.stderr.count("\n") == 1 and CANARY not in result.output
    assert not any(Path(".").iterdir())  # nothing created


@pytest.mark.slow
def test_canaries_everywhere_leave_no_trace(tmp_path: Path, http_server: Server, source_for, tiny_npz: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A mirror URL with credentials (used, to download), a data path with a token in it, a key in .env and in a
    tracked file: every byte of runs/, mlruns/, wandb/ and the console is searched."""
    monkeypatch.setattr(idx_module, "MNIST", source_for("mnist"))
    server = http_server.url.replace("http://", f"http://reader:{CANARY}@") + "/ok/"
    secret_dir = tmp_path / f"share_token={CANARY}"
    secret_dir.mkdir()
    (secret_dir / "tiny.npz").write_bytes(tiny_npz.read_bytes())
    Path(".env").write_text(f"WANDB_API_KEY={CANARY}x\nWANDB_MODE=offline\n")
    outputs = []

    mnist = runner.invoke(app, ["all", "data.name=mnist", f"data.mirror={server}", "train.epochs=1", "threads=1",
                                "tracking.system_metrics_interval=0.2"])
    outputs.append(mnist.output)
    assert mnist.exit_code == 0, mnist.output
    expected = "Basic " + base64.b64encode(f"reader:{CANARY}".encode()).decode()
    assert http_server.authorizations and set(http_server.authorizations) == {expected}  # the credentials were used

    # the real console script: W&B records the command line (sys.argv) with the run
    npz = subprocess.run([str(Path(sys.executable).with_name("trainlab")), "train", "data.name=npz",
                          f"data.path={secret_dir / 'tiny.npz'}", "train.epochs=1", "threads=1",
                          "tracking.system_metrics_interval=0.2"], capture_output=True, text=True, timeout=300)
    outputs += [npz.stdout, npz.stderr]
    assert npz.returncode == 0, npz.stderr
    monkeypatch.delenv("WANDB_API_KEY")
    # W&B kept the command line in its run file (offline: inside run-*.wandb), masked
    assert any(b"data.path=" in p.read_bytes() and b"share_token=***" in p.read_bytes()
               for p in Path("wandb").rglob("run-*.wandb"))

    leaks = [str(p) for folder in ("runs", "mlruns", "wandb") for p in Path(folder).rglob("*")
             if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert leaks == []
    assert all(CANARY not in out for out in outputs)
    assert len(list(Path("runs").iterdir())) == 2 and any(Path("wandb").rglob("*.wandb"))  # all searched, not empty
    assert all("***" in p.read_text() for p in Path("runs").glob("*/config.yaml"))  # recorded, masked
