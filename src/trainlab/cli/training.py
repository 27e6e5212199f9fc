"""`trainlab download`, `train` and `all`: from a config to a recorded run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from trainlab.cli.app import app, console
from trainlab.cli.common import (
    ConfigOption,
    OverridesArg,
    QuietOption,
    TrackerOption,
    fmt,
    load_config,
    print_evaluation,
    print_where,
    user_errors,
    warn,
)
from trainlab.cli.progress import DownloadBar, train_progress
from trainlab.errors import ConfigError
from trainlab.redaction import redact

if TYPE_CHECKING:
    from trainlab.config import Config
    from trainlab.experiment import RunOutcome

LogIntervalOption = typer.Option(30.0, "--log-interval", min=0.0, help="When output is not a terminal (CI, Docker, "
                                 "a pipe): seconds between progress lines inside an epoch.")


def print_dataset(dataset: Any) -> None:

    console.print(f"dataset {dataset.name}: {len(dataset.class_names)} classes, images {tuple(dataset.input_shape)}, "
                  f"train {len(dataset.train_y):,}, test {len(dataset.test_y):,}, from {redact(dataset.location)}",
                  soft_wrap=True, highlight=False, markup=False)
    for name, sha in dataset.files.items():
        console.print(f"  verified {name}  sha256 {sha}", soft_wrap=True, highlight=False, markup=False)


def print_outcome(out: RunOutcome) -> None:
    m = out.test.metrics
    r = out.result
    console.print(
        f"test accuracy {fmt(m['accuracy'])} · macro F1 {fmt(m['macro_f1'])} · AUROC {fmt(m['auroc'])} · "
        f"log loss {fmt(m['log_loss'])}  (best epoch {r.best_epoch} of {len(r.history)}, {r.stop_reason})",
        soft_wrap=True, highlight=False,
    )
    report = out.run_dir / "report.html"
    where = [*out.where, *([f"report page: {report} (one file, opens offline)"] if report.is_file() else [])]
    print_where(out.run_id, where, out.tracking_failures, resumable=True)


def load_dataset(cfg: Config, quiet: bool) -> Any:
    from trainlab.data import create_dataset

    bar = DownloadBar(quiet)
    try:
        return create_dataset(cfg.data, bar)
    finally:
        bar.close()


def run_training(cfg: Config, quiet: bool, log_interval: float, dataset: Any = None) -> RunOutcome:
    from trainlab.tracking import create_trackers, prepare_in_background

    trackers = create_trackers(cfg.tracking, own_processes=True)
    prepare_in_background(trackers, warn)  # their processes import MLflow and W&B while this one imports torch
    from trainlab.experiment import run_experiment

    bar = train_progress(quiet, cfg.train.monitor, log_interval)
    downloads = DownloadBar(quiet)
    try:
        return run_experiment(cfg, callbacks=bar, download_progress=downloads, dataset=dataset, warn=warn,
                              trackers=trackers)
    finally:
        downloads.close()
        bar.close()


@app.command()
def download(
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset name (default: the config's)."),
    config: Path | None = ConfigOption,
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where dataset files are looked up and saved."),
    mirror: str | None = typer.Option(None, "--mirror", help="Base URL tried before the official sources."),
    quiet: bool = QuietOption,
) -> None:
    """Fetch a dataset (or find it locally) and verify every file's SHA-256."""
    with user_errors():
        overrides = [f"data.name={dataset}"] if dataset else []
        overrides += [f"data.data_dir={data_dir}"] if data_dir else []
        overrides += [f"data.mirror={mirror}"] if mirror else []
        cfg = load_config(config, overrides + ["data.download=true"])
        print_dataset(load_dataset(cfg, quiet))


@app.command()
def train(
    overrides: list[str] | None = OverridesArg,
    config: Path | None = ConfigOption,
    resume: str | None = typer.Option(None, "--resume", help="Run id or run folder to complete: the remaining "
                                         "epochs, the test evaluation and whatever a backend is missing."),
    tracker: list[str] | None = TrackerOption,
    quiet: bool = QuietOption,
    log_interval: float = LogIntervalOption,
) -> None:
    """Train, evaluate on the test split, and record the run."""
    with user_errors():
        if resume:
            if config or overrides or tracker:

                raise ConfigError("--resume continues a run with the config it was started with; drop --config, "
                                  "--tracker and overrides")
            resume_run(resume, quiet, log_interval)
            return
        print_outcome(run_training(load_config(config, overrides, tracker), quiet, log_interval))


def resume_run(ref: str, quiet: bool, log_interval: float) -> None:
    from trainlab.resume import resume_experiment, resume_target

    target = resume_target(ref, Path("runs"))
    if target.finished:
        console.print(f"run {target.run_id} already finished and every backend recorded its end; nothing to resume",
                      highlight=False)
        return
    bar = train_progress(quiet, target.config.train.monitor, log_interval)
    downloads = DownloadBar(quiet)
    try:
        out = resume_experiment(target, callbacks=bar, download_progress=downloads, warn=warn)
    finally:
        downloads.close()
        bar.close()
    print_outcome(out)


@app.command("all")
def all_(
    overrides: list[str] | None = OverridesArg,
    config: Path | None = ConfigOption,
    tracker: list[str] | None = TrackerOption,
    quiet: bool = QuietOption,
    log_interval: float = LogIntervalOption,
) -> None:
    """Download + train + test: the whole pipeline in one command."""
    with user_errors():
        from trainlab.run_setup import check_storage

        cfg = load_config(config, overrides, tracker)
        check_storage(cfg)  # before a download, not after it
        dataset = load_dataset(cfg, quiet)
        print_dataset(dataset)
        out = run_training(cfg, quiet, log_interval, dataset=dataset)
        print_evaluation(out.test, f"test split · best checkpoint (epoch {out.result.best_epoch}) of run {out.run_id}")
        print_outcome(out)
