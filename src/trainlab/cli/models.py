"""`trainlab register RUN NAME` and `trainlab models`: the MLflow Model Registry."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from trainlab.cli.app import app, console, err_console
from trainlab.cli.common import TrackingUriOption, user_errors


@app.command()
def register(
    run: str = typer.Argument(..., metavar="RUN", help="Run id, MLflow run id or run folder."),
    name: str = typer.Argument(..., metavar="NAME", help="Registered model name (created if new)."),
    alias: str | None = typer.Option(None, "--alias", "-a", help="Move this alias (e.g. champion) to the new version."),
    tracking_uri: str | None = TrackingUriOption,
) -> None:
    """Register a run's logged model as a new version of NAME, tagged with its test metrics and data fingerprint."""
    with user_errors():
        from trainlab.mlflow_model import register as register_version
        from trainlab.runs import Record

        row, version = register_version(Record(tracking_uri), run, name, alias)
        where = f"models:/{name}/{version}" + (f" and models:/{name}@{alias}" if alias else "")
        console.print(f"registered run {row.run_id} as {where}", highlight=False, markup=False)
        console.print("W&B: the run's `model` artifact is linked to a W&B registry only online "
                      "(link it in W&B after `wandb sync`)", highlight=False, markup=False)


@app.command()
def models(
    tracking_uri: str | None = TrackingUriOption,
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Registered models: versions, aliases, the run each came from and its key test metrics."""
    with user_errors():
        from trainlab.mlflow_model import registered_models
        from trainlab.runs import Record

        found = registered_models(Record(tracking_uri))
        if as_json:
            print(json.dumps(found, indent=2))
            return
        table = Table(title=f"{len(found)} registered models", title_justify="left")
        for col in ("model", "version", "aliases", "run", "test acc", "macro F1", "AUROC"):
            table.add_column(col, justify="right" if col in ("version", "test acc", "macro F1", "AUROC") else "left")
        for model in found:
            for v in model["versions"]:
                table.add_row(model["name"], str(v["version"]), ", ".join(v["aliases"]), v["run"],
                              *(v.get(k) or "" for k in ("test_accuracy", "test_macro_f1", "test_auroc")))
        console.print(table)


INLINE_EXAMPLE = 1000  # characters: a longer example request body goes to a file the curl line reads


@app.command()
def serve(
    model: str = typer.Argument(..., metavar="MODEL", help="models:/NAME@ALIAS, models:/NAME/VERSION, a run id, "
                                "MLflow run id or run folder."),
    port: int = typer.Option(5001, "--port", "-p", min=1, max=65535, help="Port on the host."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on; keep loopback unless you mean it."),
    tracking_uri: str | None = TrackingUriOption,
) -> None:
    """MLflow's scoring server (`mlflow models serve`) on a model, reading it from the run store; prints the URL
    and a request to try."""
    import tempfile
    from pathlib import Path

    with user_errors():
        from trainlab.mlflow_model import served_model
        from trainlab.runs import Record

        record = Record(tracking_uri)
        uri, row, example = served_model(record, model)
        with tempfile.TemporaryDirectory(prefix="trainlab-serve-") as tmp:
            from trainlab.tracking.mlflow_ui import start_model_server  # the tracking package: pydantic, MLflow

            server = start_model_server(uri, record.uri, host, port, starting=lambda: err_console.print(
                f"starting MLflow's scoring server for {uri} on port {port} ...", highlight=False, markup=False))
            try:
                console.print(f"serving {uri} (run {row.run_id}) on {server.url}/invocations (Ctrl-C stops it)",
                              highlight=False, markup=False, soft_wrap=True)
                if example is not None:
                    body = f"'{example}'"
                    if len(example) > INLINE_EXAMPLE:
                        (Path(tmp) / "example.json").write_text(example)
                        body = f"@{Path(tmp) / 'example.json'}"
                    console.print("try it on the model's input example (the response: a probability per class):",
                                  highlight=False)
                    console.print(f"curl -s {server.url}/invocations -H 'Content-Type: application/json' -d {body}",
                                  highlight=False, markup=False, soft_wrap=True)
                console.file.flush()
                server.wait()
            finally:
                server.stop()
