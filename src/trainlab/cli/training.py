"""`trainlab download`, `train` and `all`: from a config to a recorded run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from trainlab.cli.app import app, console
from trainlab.cli.common import (
    ConfigOption,
    OverridesArg,
    QuietOption,
    TrackerOption,
    as_launcher,
    as_rank,
    fmt,
    load_config,
    print_evaluation,
    print_where,
    user_errors,
    warn,
)
from trainlab.cli.progress import DownloadBar, train_progress
from trainlab.errors import ConfigError, RankFailed, TrainingError, TrainlabError
from trainlab.redaction import redact

if TYPE_CHECKING:
    from trainlab.config import Config
    from trainlab.experiment import RunOutcome

NprocOption = typer.Option(1, "--nproc", min=1, help="Train on N processes of this machine (torch.distributed DDP, "
                           "started by torchrun; gloo on CPU, NCCL on GPUs): train.batch_size is the global batch, "
                           "split among them. Rank 0 records.")
NnodesOption = typer.Option("1", "--nnodes", help="Machines taking part (torchrun's --nnodes; each runs this command "
                            "with the same --rdzv-endpoint).")
RdzvOption = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT where the machines meet (torchrun's c10d "
                          "rendezvous); needed with --nnodes > 1.")
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


def run_training(cfg: Config, quiet: bool, log_interval: float, dataset: Any = None, ranks: Any = None,
                 run_id: str | None = None) -> RunOutcome:
    from trainlab.tracking import create_trackers, prepare_in_background

    trackers = create_trackers(cfg.tracking, own_processes=True)
    prepare_in_background(trackers, warn)  # their processes import MLflow and W&B while this one imports torch
    from trainlab.experiment import run_experiment

    bar = train_progress(quiet, cfg.train.monitor, log_interval)
    downloads = DownloadBar(quiet)
    try:
        return run_experiment(cfg, callbacks=bar, download_progress=downloads, dataset=dataset, warn=warn,
                              trackers=trackers, ranks=ranks, run_id=run_id)
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
    nproc: int = NprocOption,
    nnodes: str = NnodesOption,
    rdzv_endpoint: str | None = RdzvOption,
) -> None:
    """Train, evaluate on the test split, and record the run (on several processes with --nproc)."""
    if nproc > 1 or nnodes != "1":  # before torch loads: its C++ logs while machines meet (retries, a store's
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")  # timeouts with stack frames) say nothing the line won't
    from trainlab import distributed

    if distributed.launched():  # one rank of several, started by torchrun: rank 0 leads, the others follow it
        with as_rank() as ranks:
            if not ranks.leads:
                follow(ranks)
                return
            with user_errors():
                if resume:
                    resume_run(resume, quiet, log_interval, ranks)
                else:
                    print_outcome(run_training(load_config(config, overrides, tracker), quiet, log_interval,
                                               ranks=ranks, run_id=os.environ.get(distributed.RUN_ID_ENV) or None))
    with user_errors():
        if resume and (config or overrides or tracker):
            raise ConfigError("--resume continues a run with the config it was started with; drop --config, "
                              "--tracker and overrides")
    if nproc > 1 or nnodes != "1":
        from trainlab.launch import Launch

        spec = Launch(nproc, nnodes, rdzv_endpoint)
        as_launcher(lambda: launch_ranks(spec, overrides, config, resume, tracker, quiet, log_interval))
    with user_errors():
        if resume:
            resume_run(resume, quiet, log_interval)
            return
        print_outcome(run_training(load_config(config, overrides, tracker), quiet, log_interval))


def launch_ranks(spec: Any, overrides: list[str] | None, config: Path | None, resume: str | None,
                 tracker: list[str] | None, quiet: bool, log_interval: float) -> int:
    """Check what can be checked here (the options, the config, the run to resume), start the ranks under torchrun,
    and return their exit code. If a rank dies, rank 0's run is marked killed (rank 0 itself may be the one)."""
    from trainlab.checkpoint import LAST
    from trainlab.distributed import check_batch
    from trainlab.launch import launch
    from trainlab.run_setup import new_run_id

    spec.check()
    cfg = None
    if resume and spec.machines:  # the run's folder is on rank 0's machine, which resolves it
        run_id, command = resume, ["train", "--resume", resume]
    elif resume:
        from trainlab.resume import resume_target

        target = resume_target(resume, Path("runs"))
        if target.finished:
            resume_run(resume, quiet, log_interval)  # says so
            return 0
        run_id, command, cfg = target.run_id, ["train", "--resume", resume], target.config
    else:
        cfg = load_config(config, overrides, tracker)  # a bad config is one line here, before any process starts
        if not spec.machines:  # before any process starts (rank 0 checks it again, knowing every machine's)
            check_batch(cfg.train.batch_size, spec.nproc)
        run_id = new_run_id()
        command = ["train", *(overrides or []), *(["--config", str(config)] if config else []),
                   *[arg for name in tracker or [] for arg in ("--tracker", name)]]
    if spec.machines:
        from trainlab.distributed import timeout_seconds  # torch: loaded by now

        console.print(f"waiting for {spec.nnodes} machines to meet at {spec.rdzv_endpoint} (at most "
                      f"{timeout_seconds():.0f} s); rank 0's machine prints the run", highlight=False)
    def again() -> str:  # once a rank died: a resume if rank 0 got as far as a checkpoint, else the same command
        if cfg is None or (Path(cfg.output_dir) / run_id / "checkpoints" / LAST).is_file():
            return spec.resume_hint(run_id)
        return "the same command: the run had no checkpoint to resume from yet"

    try:
        code = launch(spec, [*command, *(["--quiet"] if quiet else []), "--log-interval", str(log_interval)], run_id,
                      again)
    except RankFailed:
        if cfg is not None:
            mark_run_killed(cfg, run_id)
        raise
    if code == 0 and spec.machines:
        console.print("this machine's ranks are done", highlight=False)
    return code


def mark_run_killed(cfg: Config, run_id: str) -> None:
    """A rank died: rank 0 marked the run killed, unless rank 0 was the one; then MLflow is told here (the run
    folder needs no telling: its lock shows its process gone, and `trainlab runs` says killed)."""
    from trainlab.tracking.mlflow_store import mark_killed

    why = "a process of the run was killed"
    if "mlflow" in cfg.tracking.trackers:
        try:
            mark_killed(cfg.tracking.mlflow_uri, [run_id], why, statuses=("RUNNING",))
        except Exception as exc:  # the store cannot be reached: `trainlab runs` still says killed (its process died)
            warn(f"could not mark run {run_id} killed in MLflow ({type(exc).__name__}: {exc})")


def follow(ranks: Any, trials: bool = False) -> bool:
    """A rank other than 0: train (one run, or a sweep's next trial), print nothing; exit with the code rank 0 ends
    with for the same cause. False when rank 0 had nothing more to train."""
    import signal
    import warnings

    from trainlab.distributed import lost_peer
    from trainlab.experiment import follow_experiment

    warnings.simplefilter("ignore")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return follow_experiment(ranks)
    except TrainingError:
        if trials:  # a diverged trial: rank 0 records it failed and goes on with the next
            return True
        raise typer.Exit(TrainingError.exit_code) from None
    except TrainlabError as exc:  # rank 0 meets the same problem and says it
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except RuntimeError as exc:
        if not lost_peer(exc):
            raise
        raise typer.Exit(RankFailed.exit_code) from None  # rank 0 died or stopped answering: torchrun reports it


def resume_run(ref: str, quiet: bool, log_interval: float, ranks: Any = None) -> None:
    from trainlab.resume import resume_experiment, resume_target

    target = resume_target(ref, Path("runs"))
    if target.finished:
        console.print(f"run {target.run_id} already finished and every backend recorded its end; nothing to resume",
                      highlight=False)
        if ranks is not None:
            ranks.share((None, None))  # the other ranks have nothing to train
        return
    bar = train_progress(quiet, target.config.train.monitor, log_interval)
    downloads = DownloadBar(quiet)
    try:
        out = resume_experiment(target, callbacks=bar, download_progress=downloads, warn=warn, ranks=ranks)
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
