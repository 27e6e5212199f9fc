"""The `trainlab` command: wires config, data, training, evaluation and tracking together.

The only module that prints or reads argv. Heavy libraries (torch, scikit-learn)
are imported inside the commands, so `trainlab --help` stays fast.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table

from trainlab import __version__
from trainlab.errors import TrainlabError

if TYPE_CHECKING:
    from trainlab.config import Config
    from trainlab.evaluate import Evaluation
    from trainlab.experiment import RunOutcome

app = typer.Typer(
    name="trainlab",
    help="Train image classifiers and manage the experiments around them.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# wide enough for the tables when output goes to a file or CI log (Rich assumes 80 there)
console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 150)

ConfigOption = typer.Option(None, "--config", "-c", help="YAML or JSON config file.", exists=False)
OverridesArg = typer.Argument(None, help="key=value overrides, e.g. train.epochs=5 train.optimizer.lr=0.01")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bar or per-epoch lines.")
RunsDirOption = typer.Option(Path("runs"), "--runs-dir", help="Folder of run folders (to find run ids).")
TrackerOption = typer.Option(None, "--tracker", "-t",
                             help="mlflow, wandb or none; repeat for several (overrides tracking.trackers).")
Int8Option = typer.Option(False, "--int8", help="Run an int8 copy of the model (2-3x faster on CPU; calibrated "
                          "on the first 1,024 training images; labels can differ from fp32 on a few images).")
TrackingUriOption = typer.Option(None, "--tracking-uri",
                                 help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlruns).")


def _version(value: bool) -> None:
    if value:
        console.print(f"trainlab {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Train image classifiers and manage the experiments around them."""
    from dotenv import load_dotenv

    # WANDB_API_KEY and friends; variables already set in the environment win
    load_dotenv(Path.cwd() / ".env", override=False)


# -- progress ----------------------------------------------------------------------


class DownloadBar:
    """A Rich bar per downloaded file."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if self.quiet:
            return
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        if self.progress is None:
            self.progress = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                                     console=err_console, transient=False)
            self.progress.start()
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(f"download {name}", total=total)
        self.progress.update(self.tasks[name], completed=done)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _train_progress(quiet: bool, monitor: str) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from trainlab.train import TrainCallbacks

    class TrainBar(TrainCallbacks):
        """Epoch, loss, monitored metric, images/s and ETA; one line per finished epoch."""

        def __init__(self) -> None:
            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"),
                TextColumn("{task.fields[metric]}"),
                TextColumn("{task.fields[ips]:>7,.0f} img/s"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=console,
                disable=quiet or not console.is_terminal,  # logs get the per-epoch lines only
            )
            self.task: Any = None
            self.epochs = 0
            self.window_start = time.perf_counter()
            self.window_images = 0

        def on_train_start(self, epochs: int, steps_per_epoch: int, first_epoch: int) -> None:
            self.epochs = epochs
            if not quiet:
                self.progress.console.print("epoch  loss train/val  val: acc  f1  auroc  throughput  time",
                                            highlight=False)
            self.progress.start()
            self.task = self.progress.add_task("train", total=epochs * steps_per_epoch,
                                               completed=(first_epoch - 1) * steps_per_epoch,
                                               epoch=first_epoch, epochs=epochs, loss=math.nan,
                                               metric="", ips=0.0)

        def on_step(self, epoch: int, step: int, loss: float, images: int) -> None:
            self.window_images += images
            now = time.perf_counter()
            fields: dict[str, Any] = {"epoch": epoch, "loss": loss}
            if now - self.window_start > 0.5:
                fields["ips"] = self.window_images / (now - self.window_start)
                self.window_start, self.window_images = now, 0
            self.progress.update(self.task, advance=1, **fields)

        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            self.progress.update(self.task, metric=f"{monitor} {metrics[monitor]:.4f}")
            if not quiet:
                self.progress.console.print(
                    f"epoch {epoch:>{len(str(self.epochs))}}/{self.epochs}  loss {metrics['train_loss']:.4f}"
                    f"/{metrics['val_loss']:.4f}  acc {metrics['val_accuracy']:.4f}  "
                    f"f1 {metrics['val_macro_f1']:.4f}  auroc {metrics['val_auroc']:.4f}  "
                    f"{metrics['images_per_second']:,.0f} img/s  {metrics['epoch_seconds']:.1f}s",
                    soft_wrap=True, highlight=False,
                )

        def close(self) -> None:
            self.progress.stop()

    return TrainBar()


# -- error handling ----------------------------------------------------------------


@contextmanager
def _user_errors() -> Iterator[None]:
    """TrainlabError -> one line on stderr, exit 2; Ctrl-C / SIGTERM -> exit 130 / 143."""

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except TrainlabError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        run_id = getattr(exc, "trainlab_run_id", None)
        if run_id:
            message = f"interrupted; run {run_id} is marked killed. Continue it with `trainlab train --resume {run_id}`"
        else:
            message = "interrupted"
        err_console.print(message, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(143 if str(exc) == "SIGTERM" else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _load_config(config: Optional[Path], overrides: Optional[list[str]], trackers: Optional[list[str]] = None) -> "Config":
    from trainlab.config import load_config

    chosen = _tracker_names(trackers)
    extra = [f"tracking.trackers=[{', '.join(chosen)}]"] if chosen is not None else []
    return load_config(config, [*(overrides or []), *extra])


def _tracker_names(trackers: Optional[list[str]]) -> Optional[list[str]]:
    """--tracker values as tracking.trackers; `none` alone means no tracker; None when not given."""
    return [t for t in trackers if t != "none"] if trackers else None


def _warn(message: str) -> None:
    err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)


# -- output ------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _print_dataset(dataset: Any) -> None:
    console.print(f"dataset {dataset.name}: {len(dataset.class_names)} classes, images {tuple(dataset.input_shape)}, "
                  f"train {len(dataset.train_y):,}, test {len(dataset.test_y):,}, from {dataset.location}",
                  soft_wrap=True, highlight=False)
    for name, sha in dataset.files.items():
        console.print(f"  verified {name}  sha256 {sha}", soft_wrap=True, highlight=False)


def _print_outcome(out: "RunOutcome") -> None:
    m = out.test.metrics
    r = out.result
    console.print(
        f"test accuracy {_fmt(m['accuracy'])} · macro F1 {_fmt(m['macro_f1'])} · AUROC {_fmt(m['auroc'])} · "
        f"log loss {_fmt(m['log_loss'])}  (best epoch {r.best_epoch} of {len(r.history)}, {r.stop_reason})",
        soft_wrap=True, highlight=False,
    )
    _print_where(out.run_id, out.where, out.tracking_failures)


def _print_where(run_id: str, where: list[str], failures: dict[str, str], quiet: bool = False) -> None:
    """Where the run is recorded; exit code 3 when a backend could not record it."""
    if not quiet:
        console.print(f"run {run_id} recorded:", highlight=False)
        for line in where:
            console.print(f"  {line}", soft_wrap=True, highlight=False, markup=False)
    if failures:
        failed = ", ".join(f"{name} ({why})" for name, why in failures.items())
        err_console.print(f"error: run {run_id} finished, but not every backend recorded it: {failed}. "
                          "Exit code 3.", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(3)


def _print_evaluation(ev: "Evaluation", title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for row in ev.per_class:
        table.add_row(row["class"], _fmt(row["precision"]), _fmt(row["recall"]), _fmt(row["f1"]), str(row["support"]))
    console.print(table)
    m = ev.metrics
    console.print(
        f"accuracy {_fmt(m['accuracy'])} · macro precision {_fmt(m['macro_precision'])} · macro recall "
        f"{_fmt(m['macro_recall'])} · macro F1 {_fmt(m['macro_f1'])} · AUROC {_fmt(m['auroc'])} · "
        f"log loss {_fmt(m['log_loss'])} · {m['images_per_second']:,.0f} images/s inference",
        soft_wrap=True, highlight=False,
    )
    if ev.precision == "int8":
        console.print(
            f"int8: {m['images_per_second'] / m['fp32_images_per_second']:.1f}x the fp32 speed "
            f"({m['fp32_images_per_second']:,.0f} images/s) · labels agree with fp32 on "
            f"{m['label_agreement_fp32']:.2%} of images · fp32 accuracy {_fmt(m['fp32_accuracy'])} · "
            f"quantized in {m['quantize_seconds']:.2f} s",
            soft_wrap=True, highlight=False,
        )


def _download(cfg: "Config", quiet: bool) -> Any:
    from trainlab.data import create_dataset

    bar = DownloadBar(quiet)
    try:
        return create_dataset(cfg.data, bar)
    finally:
        bar.close()


def _train(cfg: "Config", quiet: bool, resume: Optional[str] = None, dataset: Any = None) -> "RunOutcome":
    from trainlab.experiment import resume_experiment, run_experiment

    bar = _train_progress(quiet, cfg.train.monitor)
    downloads = DownloadBar(quiet)
    try:
        if resume:
            return resume_experiment(resume, cfg.output_dir, callbacks=bar, download_progress=downloads, warn=_warn)
        return run_experiment(cfg, callbacks=bar, download_progress=downloads, dataset=dataset, warn=_warn)
    finally:
        downloads.close()
        bar.close()


# -- commands ----------------------------------------------------------------------


@app.command()
def download(
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset name (default: the config's)."),
    config: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where dataset files are looked up and saved."),
    mirror: Optional[str] = typer.Option(None, "--mirror", help="Base URL tried before the official sources."),
    quiet: bool = QuietOption,
) -> None:
    """Fetch a dataset (or find it locally) and verify every file's SHA-256."""
    with _user_errors():
        overrides = [f"data.name={dataset}"] if dataset else []
        overrides += [f"data.data_dir={data_dir}"] if data_dir else []
        overrides += [f"data.mirror={mirror}"] if mirror else []
        cfg = _load_config(config, overrides + ["data.download=true"])
        _print_dataset(_download(cfg, quiet))


@app.command()
def train(
    overrides: Optional[list[str]] = OverridesArg,
    config: Optional[Path] = ConfigOption,
    resume: Optional[str] = typer.Option(None, "--resume", help="Run id or run folder to continue from its last checkpoint."),
    tracker: Optional[list[str]] = TrackerOption,
    quiet: bool = QuietOption,
) -> None:
    """Train, evaluate on the test split, and record the run."""
    with _user_errors():
        if resume and (config or overrides or tracker):
            from trainlab.errors import ConfigError

            raise ConfigError("--resume continues a run with the config it was started with; drop --config, "
                              "--tracker and overrides")
        cfg = _load_config(config, overrides, tracker)
        out = _train(cfg, quiet, resume)
        _print_outcome(out)


@app.command("all")
def all_(
    overrides: Optional[list[str]] = OverridesArg,
    config: Optional[Path] = ConfigOption,
    tracker: Optional[list[str]] = TrackerOption,
    quiet: bool = QuietOption,
) -> None:
    """Download + train + test: the whole pipeline in one command."""
    with _user_errors():
        cfg = _load_config(config, overrides, tracker)
        dataset = _download(cfg, quiet)
        _print_dataset(dataset)
        out = _train(cfg, quiet, dataset=dataset)
        _print_evaluation(out.test, f"test split · best checkpoint (epoch {out.result.best_epoch}) of run {out.run_id}")
        _print_outcome(out)


@app.command()
def test(
    run_or_model: str = typer.Argument(..., metavar="RUN_OR_MODEL", help="A checkpoint .pt, a run folder or a run id."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Override where the dataset is looked up."),
    runs_dir: Path = RunsDirOption,
    tracking_uri: Optional[str] = TrackingUriOption,
    as_json: bool = typer.Option(False, "--json", help="Print metrics as JSON."),
    record: bool = typer.Option(False, "--record", help="Record this evaluation as a run of its own (job "
                                "'evaluate', tagged with the run that trained the model) in the trackers."),
    tracker: Optional[list[str]] = TrackerOption,
    int8: bool = Int8Option,
) -> None:
    """Evaluate a saved model (or a run's best model) on its dataset's test split."""
    with _user_errors():
        from trainlab.experiment import evaluate_checkpoint, record_evaluation

        payload, ev = evaluate_checkpoint(run_or_model, runs_dir, data_dir, DownloadBar(as_json), tracking_uri, int8)
        recorded = record_evaluation(payload, ev, run_or_model, tracker_names=_tracker_names(tracker),
                                     mlflow_uri=tracking_uri, warn=_warn) if record else None
        if as_json:
            print(json.dumps({"run_id": payload.get("run_id"), "epoch": payload.get("epoch"),
                              "precision": ev.precision, "metrics": ev.metrics, "per_class": ev.per_class,
                              "confusion_matrix": ev.confusion.tolist(),
                              **({"recorded_as": recorded.run_id} if recorded else {})}, indent=2))
        else:
            _print_evaluation(ev, f"test split · run {payload.get('run_id')} · epoch {payload.get('epoch')}")
        if recorded:
            _print_where(recorded.run_id, recorded.where, recorded.tracking_failures, quiet=as_json)


@app.command()
def predict(
    model: str = typer.Argument(..., metavar="MODEL", help="A checkpoint .pt, a run folder or a run id."),
    images: list[Path] = typer.Argument(..., help="Image files (png, jpg, ...) or IDX image files."),
    runs_dir: Path = RunsDirOption,
    tracking_uri: Optional[str] = TrackingUriOption,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per image."),
    top_k: int = typer.Option(1, "--top-k", min=1, help="How many most likely labels to show."),
    int8: bool = Int8Option,
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where the model's training images are looked "
                                            "up (for --int8 calibration)."),
) -> None:
    """Label images with a saved model: label and class probabilities."""
    with _user_errors():
        from trainlab.predict import predict_files

        result = predict_files(model, images, runs_dir, tracking_uri=tracking_uri, int8=int8, data_dir=data_dir)
        if as_json:
            print(json.dumps([
                {"source": src, "label": result.class_names[int(p.argmax())], "probability": float(p.max()),
                 "probabilities": dict(zip(result.class_names, map(float, p)))}
                for src, p in zip(result.sources, result.probs)
            ], indent=2))
            return
        title = f"{len(result.sources):,} images · {result.images_per_second:,.0f} images/s"
        if result.quantize_seconds is not None:
            title += f" int8 (quantized in {result.quantize_seconds:.2f} s)"
        table = Table(title=title, title_justify="left")
        table.add_column("image")
        for k in range(min(top_k, len(result.class_names))):
            table.add_column(f"label {k + 1}" if top_k > 1 else "label")
            table.add_column("probability", justify="right")
        shown = 0
        for src, p in zip(result.sources, result.probs):
            order = p.argsort()[::-1][:top_k]
            table.add_row(src, *[x for k in order for x in (result.class_names[k], f"{p[k]:.4f}")])
            shown += 1
            if shown == 50 and len(result.sources) > 60:
                table.add_row(f"… {len(result.sources) - 50:,} more (use --json for all)")
                break
        console.print(table)


runs_app = typer.Typer(help="List runs from the MLflow record: filter, sort, group; `runs show RUN` for one.",
                       no_args_is_help=False)
app.add_typer(runs_app, name="runs")


def _when(ms: int | None) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M") if ms else ""


@runs_app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context,
    filter_string: str = typer.Option("", "--filter", "-f",
                                      help="MLflow search syntax, e.g. \"metrics.test_accuracy > 0.9 and params.model = 'small'\""),
    sort: Optional[str] = typer.Option(None, "--sort", "-s", help="A metric (test_accuracy) or metrics./params./attributes. key."),
    ascending: bool = typer.Option(False, "--asc", help="Sort ascending (default: descending)."),
    group: Optional[str] = typer.Option(None, "--group", "-g", help="Group by this param; mean ± std of --metric per group."),
    metric: str = typer.Option("test_accuracy", "--metric", "-m", help="Metric summarised by --group."),
    experiment: Optional[str] = typer.Option(None, "--experiment", "-e", help="Only this experiment."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many runs."),
    tracking_uri: Optional[str] = TrackingUriOption,
    as_json: bool = typer.Option(False, "--json", help="Print runs as JSON."),
) -> None:
    """List runs with their key metrics."""
    if ctx.invoked_subcommand:
        return
    with _user_errors():
        from trainlab.runs import KEY_METRICS, group_runs, list_runs, open_client

        rows = list_runs(open_client(tracking_uri), experiment=experiment, filter_string=filter_string,
                         sort=sort, ascending=ascending, limit=limit)
        if as_json:
            print(json.dumps([r.__dict__ for r in rows], indent=2, default=str))
            return
        if group:
            stats = group_runs(rows, group, metric)
            table = Table(title=f"{metric} by {group} ({len(rows)} runs)", title_justify="left")
            for col in (group, "runs", "mean", "std"):
                table.add_column(col, justify="left" if col == group else "right")
            for g in stats:
                table.add_row(g.value, str(g.runs), _fmt(g.mean), _fmt(g.std))
            console.print(table)
            return
        table = Table(title=f"{len(rows)} runs" + (f" matching {filter_string!r}" if filter_string else ""),
                      title_justify="left")
        several = len({r.experiment for r in rows}) > 1
        headers = ["run", *(["experiment"] if several else []), "status", "dataset", "model", "epochs",
                   "test acc", "macro F1", "AUROC", "started"]
        for col in headers:
            table.add_column(col, justify="right" if col in ("epochs", "test acc", "macro F1", "AUROC") else "left",
                             no_wrap=col == "run")
        for r in rows:
            evaluation = r.tags.get("job") == "evaluate"  # `trainlab test --record`: no training of its own
            table.add_row(r.run_id, *([r.experiment] if several else []), r.status.lower(),
                          r.params.get("dataset", r.tags.get("dataset", "")),
                          r.params.get("model", r.tags.get("model", "")),
                          "test" if evaluation else f"{r.metrics.get('epochs_run', float('nan')):.0f}",
                          *(_fmt(r.metrics.get(m, float("nan"))) for m in KEY_METRICS), _when(r.start_ms))
        console.print(table)


@runs_app.command("show")
def runs_show(
    run: str = typer.Argument(..., metavar="RUN", help="trainlab run id or MLflow run id."),
    tracking_uri: Optional[str] = TrackingUriOption,
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """One run: config, final metrics, tags and artifacts."""
    with _user_errors():
        from trainlab.runs import open_client, run_details

        info = run_details(open_client(tracking_uri), run)
        if as_json:
            print(json.dumps(info, indent=2, default=str))
            return
        console.print(f"run {info['run_id']} (MLflow {info['mlflow_id']}) · experiment {info['experiment']} · "
                      f"{info['status'].lower()} · {_when(info['start_ms'])} → {_when(info['end_ms'])}",
                      highlight=False, soft_wrap=True)
        for title, items in (("config", info["params"]), ("metrics", info["metrics"]), ("tags", info["tags"])):
            table = Table(title=title, title_justify="left", show_header=False)
            table.add_column("key")
            table.add_column("value")
            for key, value in items.items():
                if title == "config" and "." not in key and key not in ("name", "seed", "device", "threads", "output_dir"):
                    continue  # the short filter aliases repeat config values
                table.add_row(key, _fmt(value) if isinstance(value, float) else str(value))
            console.print(table)
        console.print("artifacts:", highlight=False)
        for path, size in info["artifacts"]:
            console.print(f"  {path}  ({size:,} bytes)", highlight=False, markup=False)


@app.command()
def ui(
    port: int = typer.Option(5000, "--port", "-p", help="Port on 127.0.0.1."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on; keep loopback unless you mean it."),
    tracking_uri: Optional[str] = TrackingUriOption,
) -> None:
    """Serve MLflow's own UI for the run store (the local ./mlruns by default)."""
    import os

    with _user_errors():
        from trainlab.redaction import redact
        from trainlab.runs import existing_store

        uri = existing_store(tracking_uri)
        if uri.startswith("http"):
            console.print(f"the runs are on the tracking server {redact(uri)}; open it in a browser", highlight=False)
            return
        console.print(f"MLflow UI for {uri} on http://{host}:{port} (Ctrl-C stops it)", highlight=False)
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                                  "--host", host, "--port", str(port)])


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
