"""Progress while work runs: a Rich bar on a terminal; plain, periodic lines in logs (CI, Docker, `| tee`)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from trainlab.cli.app import console, err_console

if TYPE_CHECKING:
    from trainlab.experiment import RunCallbacks, RunStart


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
            label = name if name.startswith(("decode ", "read ")) else f"download {name}"
            self.tasks[name] = self.progress.add_task(label, total=total)
        self.progress.update(self.tasks[name], completed=done)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def start_line(start: RunStart) -> str:
    """One line saying what is about to be trained on what, and where."""
    sizes = start.sizes
    shape = "x".join(map(str, start.input_shape))
    classes = ", ".join(start.class_names[:10]) + (", ..." if len(start.class_names) > 10 else "")
    train = f" ({start.train_source})" if start.train_source else ""
    test = f" ({start.test_source})" if start.test_source else ""
    return (f"{start.dataset}: {sizes['train']:,} train{train} / {sizes['val']:,} val ({start.val_source}) / "
            f"{sizes['test']:,} test{test} images of {shape}, {len(start.class_names)} classes ({classes}) · "
            f"model {start.model} ({start.parameters:,} parameters) · {start.device}, {start.threads} "
            f"thread{'s' if start.threads != 1 else ''} · run {start.run_id}")


def class_counts_line(start: RunStart, shown: int = 10) -> str:
    """Images per class per split, one line: "per class: brick 32/4/8, grass 32/4/8 (train/val/test)"."""
    counts = start.class_counts
    if not counts:
        return ""
    splits = [s for s in ("train", "val", "test") if s in counts]
    rows = [f"{name} {'/'.join(f'{counts[s][i]:,}' for s in splits)}" for i, name in enumerate(start.class_names)]
    more = f", ... ({len(rows) - shown} more classes, all in data.json)" if len(rows) > shown else ""
    read = f"{start.ingestion} · " if start.ingestion else ""  # a folder of image files: decoded, or from the cache
    return f"{read}images per class ({'/'.join(splits)}): {', '.join(rows[:shown])}{more}"


def train_progress(quiet: bool, monitor: str, log_interval: float = 30.0) -> RunCallbacks:
    """Progress for `train` / `all`: a bar on a terminal, else a line per epoch and one every ``log_interval`` s."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from trainlab.experiment import RunCallbacks

    class TrainBar(RunCallbacks):
        def __init__(self) -> None:
            self.terminal = console.is_terminal
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
                disable=quiet or not self.terminal,  # logs get plain lines instead
            )
            self.task: Any = None
            self.epochs = self.steps = 0
            self.window_start = time.perf_counter()
            self.window_images = 0
            self.epoch_start = self.last_line = time.monotonic()
            self.epoch_loss = 0.0
            self.epoch_images = 0

        def on_run_start(self, start: RunStart) -> None:
            if not quiet:
                console.print(start_line(start), soft_wrap=True, highlight=False, markup=False)
                if per_class := class_counts_line(start):
                    console.print(per_class, soft_wrap=True, highlight=False, markup=False)

        def on_stage(self, text: str) -> None:
            if not quiet:
                console.print(text, soft_wrap=True, highlight=False, markup=False)

        def on_train_start(self, epochs: int, steps_per_epoch: int, first_epoch: int) -> None:
            self.epochs, self.steps = epochs, steps_per_epoch
            if not quiet:
                self.progress.console.print("epoch  loss train/val  val: acc  f1  auroc  throughput  time",
                                            highlight=False)
            self.progress.start()
            self.task = self.progress.add_task("train", total=epochs * steps_per_epoch,
                                               completed=(first_epoch - 1) * steps_per_epoch,
                                               epoch=first_epoch, epochs=epochs, loss=math.nan,
                                               metric="", ips=0.0)
            self.epoch_start = self.last_line = time.monotonic()

        def on_step(self, epoch: int, step: int, loss: float, images: int) -> None:
            if step == 0:
                self.epoch_start, self.epoch_loss, self.epoch_images = time.monotonic(), 0.0, 0
            self.epoch_loss += loss * images
            self.epoch_images += images
            self.window_images += images
            now = time.perf_counter()
            fields: dict[str, Any] = {"epoch": epoch, "loss": loss}
            if now - self.window_start > 0.5:
                fields["ips"] = self.window_images / (now - self.window_start)
                self.window_start, self.window_images = now, 0
            self.progress.update(self.task, advance=1, **fields)
            if not quiet and not self.terminal and time.monotonic() - self.last_line >= log_interval:
                self._step_line(epoch, step)

        def _step_line(self, epoch: int, step: int) -> None:
            """In a log, a long epoch still says every ``log_interval`` s that it is alive, and how far it is."""
            now = time.monotonic()
            self.last_line = now
            elapsed = max(now - self.epoch_start, 1e-9)
            left = elapsed / (step + 1) * (self.steps - step - 1)
            console.print(f"epoch {epoch}/{self.epochs}  step {step + 1:,}/{self.steps:,}  "
                          f"loss {self.epoch_loss / max(self.epoch_images, 1):.4f} (running)  "
                          f"{self.epoch_images / elapsed:,.0f} img/s  epoch ends in {left:,.0f}s",
                          soft_wrap=True, highlight=False)

        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            self.last_line = time.monotonic()
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
