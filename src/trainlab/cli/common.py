"""What every command shares: options, one-line errors and exit codes, config loading, number formatting."""

from __future__ import annotations

import errno
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import typer
from rich.table import Table

from trainlab.cli.app import console, err_console
from trainlab.errors import RecordIncomplete, RunInterrupted, StorageError, TrainlabError
from trainlab.redaction import redact

if TYPE_CHECKING:
    from trainlab.config import Config
    from trainlab.evaluate import Evaluation

ConfigOption = typer.Option(None, "--config", "-c", help="YAML or JSON config file.", exists=False)
OverridesArg = typer.Argument(None, help="key=value overrides, e.g. train.epochs=5 train.optimizer.lr=0.01")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bar or per-epoch lines.")
RunsDirOption = typer.Option(Path("runs"), "--runs-dir", help="Folder of run folders (to find run ids).")
TrackerOption = typer.Option(None, "--tracker", "-t",
                             help="mlflow, wandb or none; repeat for several (overrides tracking.trackers).")
Int8Option = typer.Option(False, "--int8", help="Run an int8 copy of the model (faster on CPUs with VNNI; "
                          "calibrated on the first 1,024 training images; labels can differ from fp32 on a few images).")
TrackingUriOption = typer.Option(None, "--tracking-uri",
                                 help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlruns).")
DataDirOption = typer.Option(None, "--data-dir", help="Override where the dataset is looked up (for a model trained "
                             "on a folder of photos: that folder, moved or copied).")

# a disk or permission problem the user can fix, wherever it strikes (a download, a run folder, a store)
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


@contextmanager
def user_errors() -> Iterator[None]:
    """TrainlabError -> one line on stderr, its exit code; Ctrl-C / SIGTERM -> what became of the run, exit 130 / 143
    (the codes: the table in errors.py)."""

    def on_sigterm(signum: int, frame: Any) -> None:
        if run_ending(sys.exc_info()[1]):
            return  # the run is already ending as killed; raising again would cut its record short
        raise RunInterrupted(sigterm=True)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except TrainlabError as exc:
        error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:
        if exc.errno not in _STORAGE_ERRNOS:
            raise
        error(storage_message(exc))
        raise typer.Exit(StorageError.exit_code) from None
    except KeyboardInterrupt as exc:  # a RunInterrupted says what became of the run; Python's own Ctrl-C, nothing
        interrupted = RunInterrupted.of(exc)
        if not (interrupted.lost_rank == "died" and launched_by_trainlab()):  # the launcher says which, and how
            err_console.print(str(interrupted), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(interrupted.exit_code) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def launched_by_trainlab() -> bool:
    """Whether `--nproc`'s launcher started this rank (not a torchrun of the user's)."""
    from trainlab.distributed import LAUNCHER_ENV

    return bool(os.environ.get(LAUNCHER_ENV))


def run_ending(exc: BaseException | None) -> bool:
    """Whether ``exc``, being handled, already ends the run as killed: an interruption, or a lost rank of several
    (torch.distributed's DistError, whose stop signal from torchrun follows it)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if exc is None or "torch" not in sys.modules:
        return False
    from trainlab.distributed import lost_peer

    return lost_peer(exc)


@contextmanager
def as_rank() -> Iterator[Any]:
    """This process as one rank under torchrun: its ``Ranks`` once it joined the process group; it leaves it at
    the end, and the command ends through ``distributed.exit_process`` with its exit code (0, or a typer.Exit's).
    Once the command's work is over, torchrun's stop signal no longer cuts the exit short."""
    from trainlab import distributed

    code = 0
    try:
        with user_errors():
            ranks = distributed.join()
        try:
            yield ranks
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            distributed.leave()
    except click.exceptions.Exit as done:
        code = done.exit_code
    distributed.exit_process(code)


def as_launcher(launch: Callable[[], int]) -> NoReturn:
    """Run ``launch`` (it starts ranks under torchrun and returns their exit code); end through
    ``distributed.exit_process``: torchrun's store, hosted here, aborts at times in C++'s exit otherwise."""
    from trainlab import distributed

    code = 0
    try:
        with user_errors():
            code = launch()
    except click.exceptions.Exit as done:
        code = done.exit_code
    distributed.exit_process(code)


def storage_message(exc: OSError) -> str:
    """'no space left on device while writing PATH; ...': what happened, where, and what to do."""
    what = (exc.strerror or str(exc)).lower()
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        where = f" while writing {exc.filename}" if exc.filename else ""
        return f"{what}{where}; free some space, then run the command again"
    where = f": {exc.filename}" if exc.filename else ""
    return f"{what}{where}; fix the permissions or choose another folder, then run the command again"


def error(message: str) -> None:
    _say(f"error: {message}")


def warn(message: str) -> None:
    _say(f"warning: {message}")


def _say(line: str) -> None:
    """One line on stderr, redacted; a stderr that cannot take it (a file on a full disk) loses it, nothing more."""

    try:
        err_console.print(redact(line), markup=False, highlight=False, soft_wrap=True)
    except OSError:
        pass


def load_config(config: Path | None, overrides: list[str] | None,
                trackers: list[str] | None = None) -> Config:
    from trainlab.config import load_config as load

    chosen = tracker_names(trackers)
    extra = [f"tracking.trackers=[{', '.join(chosen)}]"] if chosen is not None else []
    return load(config, [*(overrides or []), *extra])


def tracker_names(trackers: list[str] | None) -> list[str] | None:
    """--tracker values as tracking.trackers; `none` alone means no tracker; None when not given."""
    return [t for t in trackers if t != "none"] if trackers else None


def fmt(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def print_where(run_id: str, where: list[str], failures: dict[str, str], quiet: bool = False,
                resumable: bool = False) -> None:
    """Where the run is recorded; RecordIncomplete (exit code 3) when a backend could not record it (with the
    `--resume` that completes a training run's record when ``resumable``)."""
    if not quiet:
        console.print(f"run {run_id} recorded:", highlight=False)
        for line in where:
            console.print(f"  {line}", soft_wrap=True, highlight=False, markup=False)
    if failures:
        failed = ", ".join(f"{name} ({why})" for name, why in failures.items())
        fix = f" Once it is reachable again, `trainlab train --resume {run_id}` completes its record." if resumable else ""
        raise RecordIncomplete(f"run {run_id} finished, but not every backend recorded it: {failed}.{fix} "
                               f"Exit code {RecordIncomplete.exit_code}.")


def print_evaluation(ev: Evaluation, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for row in ev.per_class:
        table.add_row(row["class"], fmt(row["precision"]), fmt(row["recall"]), fmt(row["f1"]), str(row["support"]))
    console.print(table)
    m = ev.metrics
    console.print(
        f"accuracy {fmt(m['accuracy'])} · macro precision {fmt(m['macro_precision'])} · macro recall "
        f"{fmt(m['macro_recall'])} · macro F1 {fmt(m['macro_f1'])} · AUROC {fmt(m['auroc'])} · "
        f"log loss {fmt(m['log_loss'])} · {m['images_per_second']:,.0f} images/s inference",
        soft_wrap=True, highlight=False,
    )
    if ev.precision == "int8":
        console.print(
            f"int8: {m['images_per_second'] / m['fp32_images_per_second']:.1f}x the fp32 speed "
            f"({m['fp32_images_per_second']:,.0f} images/s) · labels agree with fp32 on "
            f"{m['label_agreement_fp32']:.2%} of images · fp32 accuracy {fmt(m['fp32_accuracy'])} · "
            f"quantized in {m['quantize_seconds']:.2f} s",
            soft_wrap=True, highlight=False,
        )
