"""`trainlab ui`: MLflow's own UI for the run store, on loopback."""

from __future__ import annotations

import typer

from trainlab.cli.app import app, console, err_console
from trainlab.cli.common import TrackingUriOption, user_errors
from trainlab.redaction import redact


@app.command()
def ui(
    port: int = typer.Option(5000, "--port", "-p", min=1, max=65535, help="Port on 127.0.0.1."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on; keep loopback unless you mean it."),
    tracking_uri: str | None = TrackingUriOption,
) -> None:
    """Serve MLflow's own UI for the run store (the local ./mlruns by default)."""
    with user_errors():
        from trainlab.run_listing import newest_experiment
        from trainlab.runs import existing_store

        uri = existing_store(tracking_uri)
        if uri.startswith("http"):
            console.print(f"the runs are on the tracking server {redact(uri)}; open it in a browser", highlight=False)
            return
        from trainlab.tracking.mlflow_ui import start_ui  # the tracking package: pydantic, MLflow

        server = start_ui(uri, host, port, starting=lambda: err_console.print(  # returns once the page answers
            f"starting MLflow's UI on port {port} (its first start on a small machine takes up to a minute) ...",
            highlight=False))
        try:
            console.print(f"MLflow UI for {uri} on {ui_page(server.url, newest_experiment(uri))} (Ctrl-C stops it)",
                          highlight=False, soft_wrap=True)
            console.file.flush()
            server.wait()
        finally:
            server.stop()


def ui_page(url: str, experiment_id: str | None) -> str:
    """The runs table of the newest experiment, in MLflow's model-training view (MLflow 3 opens a first-time
    browser in its GenAI view, on traces, otherwise)."""
    return f"{url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning" if experiment_id else url
