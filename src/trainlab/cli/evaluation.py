"""`trainlab test` and `trainlab predict`: a saved model on the test split, or on new images."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from trainlab.cli.app import app, console
from trainlab.cli.common import (
    DataDirOption,
    Int8Option,
    RunsDirOption,
    TrackerOption,
    TrackingUriOption,
    print_evaluation,
    print_where,
    tracker_names,
    user_errors,
    warn,
)
from trainlab.cli.progress import DownloadBar

ModelArg = typer.Argument(..., metavar="MODEL", help="A checkpoint .pt, a run folder, a trainlab run id, an MLflow "
                         "run id, or a registered model: models:/NAME@ALIAS, models:/NAME/VERSION, models:/NAME/latest.")


@app.command()
def test(
    run_or_model: str = typer.Argument(..., metavar="RUN_OR_MODEL", help="A checkpoint .pt, a run folder or a run id."),
    data_dir: Path | None = DataDirOption,
    runs_dir: Path = RunsDirOption,
    tracking_uri: str | None = TrackingUriOption,
    as_json: bool = typer.Option(False, "--json", help="Print metrics as JSON."),
    record: bool = typer.Option(False, "--record", help="Record this evaluation as a run of its own (job "
                                "'evaluate', tagged with the run that trained the model) in the trackers."),
    tracker: list[str] | None = TrackerOption,
    int8: bool = Int8Option,
) -> None:
    """Evaluate a saved model (or a run's best model) on its dataset's test split."""
    with user_errors():
        from trainlab.evaluation_run import evaluate_checkpoint, record_evaluation
        from trainlab.quantize import int8_slower_note

        payload, ev, fingerprint = evaluate_checkpoint(run_or_model, runs_dir, data_dir, DownloadBar(as_json),
                                                       tracking_uri, int8)
        if int8 and (note := int8_slower_note(ev.metrics["images_per_second"], ev.metrics["fp32_images_per_second"])):
            warn(note)
        recorded = record_evaluation(payload, ev, run_or_model, tracker_names=tracker_names(tracker),
                                     mlflow_uri=tracking_uri, data_fingerprint=fingerprint, warn=warn) if record else None
        if as_json:
            print(json.dumps({"run_id": payload.get("run_id"), "epoch": payload.get("epoch"),
                              "precision": ev.precision, "metrics": ev.metrics, "per_class": ev.per_class,
                              "confusion_matrix": ev.confusion.tolist(),
                              **({"recorded_as": recorded.run_id} if recorded else {})}, indent=2))
        else:
            print_evaluation(ev, f"test split · run {payload.get('run_id')} · epoch {payload.get('epoch')}")
        if recorded:
            print_where(recorded.run_id, recorded.where, recorded.tracking_failures, quiet=as_json)


@app.command()
def predict(
    model: str = ModelArg,
    images: list[Path] = typer.Argument(..., help="Image files (png, jpg, ...), IDX image files, or folders of them "
                                      "(searched recursively, in name order)."),
    runs_dir: Path = RunsDirOption,
    tracking_uri: str | None = TrackingUriOption,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array: one object per image."),
    top_k: int = typer.Option(1, "--top-k", min=1, help="How many most likely labels to show (also in --json)."),
    invert: bool = typer.Option(False, "--invert", help="Invert the images (255 - pixel) first: for dark digits on "
                                "a light background when the model learned light on dark, or the reverse."),
    int8: bool = Int8Option,
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where the model's training images are looked "
                                            "up (for --int8 calibration): the data folder, or for a model trained on "
                                            "a folder of photos, that folder."),
) -> None:
    """Label images with a saved model: label and class probabilities."""
    with user_errors():
        from trainlab.predict import predict_files

        result = predict_files(model, images, runs_dir, tracking_uri=tracking_uri, int8=int8, data_dir=data_dir,
                               invert=invert)
        for note in result.notes:
            warn(note)
        k = min(top_k, len(result.class_names))
        if as_json:
            print(json.dumps([
                {"source": src, "label": result.class_names[int(p.argmax())], "probability": float(p.max()),
                 "top_k": [{"label": result.class_names[i], "probability": float(p[i])} for i in p.argsort()[::-1][:k]],
                 "probabilities": dict(zip(result.class_names, map(float, p)))}
                for src, p in zip(result.sources, result.probs)
            ], indent=2))
            return
        title = f"{len(result.sources):,} images · {result.images_per_second:,.0f} images/s"
        if result.quantize_seconds is not None:
            title += f" int8 (quantized in {result.quantize_seconds:.2f} s)"
        table = Table(title=title, title_justify="left")
        table.add_column("image")
        for rank in range(k):
            table.add_column(f"label {rank + 1}" if k > 1 else "label")
            table.add_column("probability", justify="right")
        for shown, (src, p) in enumerate(zip(result.sources, result.probs), 1):
            order = p.argsort()[::-1][:k]
            table.add_row(src, *[x for i in order for x in (result.class_names[i], f"{p[i]:.4f}")])
            if shown == 50 and len(result.sources) > 60:
                table.add_row(f"… {len(result.sources) - 50:,} more (use --json for all)")
                break
        console.print(table, soft_wrap=True)
