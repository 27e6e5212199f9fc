"""One experiment end to end: data -> model -> train -> evaluate, recorded by the trackers.

This is the glue `trainlab train`, `all` and sweep trials call; it returns results
and prints nothing. A saved model tested on its own is ``evaluation_run.py``.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainlab import __version__, failpoints
from trainlab.augment import make_augmenter
from trainlab.backbones import BACKBONES
from trainlab.checkpoint import LAST, load_checkpoint, model_from_checkpoint
from trainlab.config import Config, LossConfig, recorded_config
from trainlab.data import Dataset, Splits, load_data
from trainlab.data.dataset import rare_classes
from trainlab.data.fetch import DownloadProgress
from trainlab.data.images import background
from trainlab.distributed import Ranks, check_batch, lost_peer
from trainlab.errors import (
    ConfigError,
    RunInterrupted,
    StorageError,
    TrainlabError,
)
from trainlab.evaluate import Evaluation
from trainlab.models import Classifier, count_parameters, create_model
from trainlab.provenance import IMAGE_DIRTY, UNTRACKED_BUDGET, training_precision, untracked_advice
from trainlab.run_documents import record_start, run_documents
from trainlab.run_setup import check_storage, new_run_id, run_lock
from trainlab.tracking import Run, RunInfo, Tracker, create_trackers, prepare_in_background
from trainlab.tracking.process import this_process
from trainlab.train import TrainCallbacks, TrainResult, train
from trainlab.transfer import evaluate_test, model_description, prepare_backbone, probe_or_full

STARTUP_WAIT_S = 15.0
EXAMPLES = 2  # test images logged as the MLflow model's input example
SHOW_SKIPPED = 3  # unreadable files named in the warning; all are recorded
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass(frozen=True)
class RunStart:
    """What a run is about to train, on what, where: the line a user sees first."""

    run_id: str
    dataset: str
    class_names: tuple[str, ...]
    sizes: dict[str, int]
    input_shape: tuple[int, ...]
    val_source: str  # "folder val/" or "10% of train"
    model: str
    parameters: int
    device: str
    threads: int
    resumed: bool
    train_source: str = ""  # "folder train/", "the rest of folder train/"; empty: the source's training split
    test_source: str = ""  # "folder test/", "20% of folder train/, stratified: no test/ folder"
    class_counts: dict[str, list[int]] = field(default_factory=dict)  # split -> images per class
    ingestion: str = ""  # "cache hit: 2,000 images, none decoded"


class RunCallbacks(TrainCallbacks):
    """Training progress hooks, plus the run's opening facts; the defaults do nothing."""

    def on_run_start(self, start: RunStart) -> None: ...

    def on_stage(self, text: str) -> None:
        """A step before the epochs that takes a while (a backbone's features): said as it starts and ends."""

    def close(self) -> None:
        """The run is over (finished or not): stop any display."""


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    config: Config
    dataset: Dataset
    sizes: dict[str, int]
    parameters: int
    result: TrainResult
    test: Evaluation
    where: list[str]  # where each tracking backend recorded the run (once its record has ended)
    tracking_failures: dict[str, str]  # backend -> what went wrong (empty when all recorded)
    ending: threading.Thread | None = None  # the record ending in the background

    def wait_recorded(self, timeout: float | None = None) -> bool:
        """Wait until every backend and the run folder have the run's end; False if still ending."""
        if self.ending is not None:
            self.ending.join(timeout)
            return not self.ending.is_alive()
        return True


@functools.lru_cache(maxsize=1)
def process_start_time() -> float:
    """When this process started (time.time() scale): start-up latency is measured from here."""
    import psutil

    return psutil.Process().create_time()


def configure_torch(cfg: Config, ranks: Ranks | None = None) -> tuple[torch.device, int]:
    """Pin threads and determinism (both change float results); pick the device (a rank's own GPU). Threads
    default to this machine's cores shared among its ranks."""
    ranks = ranks or Ranks()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but torch sees no CUDA GPU on this machine; set device: cpu or auto")
    cuda = cfg.device != "cpu" and torch.cuda.is_available()
    device = torch.device("cuda", ranks.local_rank) if cuda and ranks.distributed else torch.device("cuda" if cuda else "cpu")
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // ranks.local_world_size))
    if device.type == "cuda":
        # the CPU kernels trainlab uses are deterministic already (tests check it); the
        # switch itself imports torch's compiler stack, 2 s of start-up on a small CPU
        torch.use_deterministic_algorithms(True, warn_only=True)
    return device, torch.get_num_threads()


def check_loss_fits(loss: LossConfig, dataset: Dataset) -> None:
    """Catch the two mistakes teams make by hand: binary loss on many classes, wrong label encoding."""
    if loss.name == "binary_cross_entropy" and dataset.num_classes != 2:
        raise ConfigError(
            f"train.loss.name is 'binary_cross_entropy' but dataset {dataset.name!r} has "
            f"{dataset.num_classes} classes; binary cross-entropy needs exactly 2: use cross_entropy"
        )
    if loss.targets != dataset.label_encoding:
        found = "one-hot label rows" if dataset.label_encoding == "onehot" else "integer class labels"
        raise ConfigError(
            f"train.loss.targets is {loss.targets!r} but dataset {dataset.name!r} stores {found}; "
            f"set train.loss.targets: {dataset.label_encoding}"
        )


TRIAL_DISK_ADVICE = ("free some space, then run the same sweep command again: this trial is trained again, the "
                     "trials already recorded are kept")


def disk_full(exc: OSError, run_id: str, job: str = "train", ranks: Ranks | None = None,
              run_dir: Path | None = None) -> StorageError:
    """A full disk mid-run: one line, the last good checkpoint kept, and how to continue (the run's folder when it
    is not under runs/, where `--resume RUN_ID` looks)."""
    where = f" while writing {exc.filename}" if exc.filename else ""
    what = f"{(exc.strerror or 'no space left on device').lower()}{where}"
    if job == "trial":  # the sweep queues the trial again
        return StorageError(f"{what}; {TRIAL_DISK_ADVICE}")
    ref = run_id if run_dir is None or run_dir.parent == Path("runs") else str(run_dir)
    again = ranks.resume_hint(ref) if ranks is not None and ranks.distributed else f"`trainlab train --resume {ref}`"
    return StorageError(f"{what}; the last good checkpoint is kept: free some space, then continue with {again}")


def build_model(cfg: Config, dataset: Dataset, splits: Splits) -> Classifier:
    """The configured network, seeded, normalising inputs with the training split's pixel statistics (a pretrained
    backbone: with its weights' statistics, and its weights loaded from model.pretrained)."""
    num_outputs = 1 if cfg.train.loss.name == "binary_cross_entropy" else dataset.num_classes
    torch.manual_seed(cfg.seed)
    if cfg.model.arch in BACKBONES:
        spec = BACKBONES[cfg.model.arch]
        model = create_model(cfg.model, dataset.input_shape, num_outputs, spec.mean, spec.std)
        prepare_backbone(model, cfg)
        return model
    # torch, not numpy: numpy's std of 50k images builds float64 temporaries (0.9 s against 0.2 s)
    std, mean = torch.std_mean(torch.from_numpy(splits.train_x).float(), dim=(0, 2, 3), correction=0)
    return create_model(cfg.model, dataset.input_shape, num_outputs, mean.tolist(), std.clamp(min=1.0).tolist())


def run_experiment(
    cfg: Config,
    *,
    callbacks: TrainCallbacks | None = None,
    download_progress: DownloadProgress | None = None,
    trackers: Sequence[Tracker] | None = None,
    resume: dict[str, Any] | None = None,
    run_id: str | None = None,
    dataset: Dataset | None = None,
    warn: Callable[[str], None] | None = None,
    job: str = "train",
    group: str | None = None,
    tags: dict[str, str] | None = None,
    wait_for_trackers: bool = True,
    end_in_background: bool = False,
    ranks: Ranks | None = None,
) -> RunOutcome:
    """Train, evaluate on the test split and record.

    ``resume`` is a last.pt payload to continue from (a run whose epochs are all done gets its
    evaluation and records completed); ``dataset`` one already loaded from ``cfg.data``;
    ``warn`` receives problems that do not stop the run (a tracking backend, skipped files).
    A sweep's trial passes its ``job``, W&B ``group`` and ``tags`` (its MLflow parent), does not wait for
    the trackers to start (their clients are warm), and ends its record in the background while the next
    trial trains: ``outcome.wait_recorded()`` waits for that end.
    ``ranks``: this process leads several under torchrun; the others run ``follow_experiment``.
    """
    warn = warn or (lambda message: None)
    ranks = ranks or Ranks()
    check_storage(cfg)
    trackers = list(trackers) if trackers is not None else create_trackers(cfg.tracking)
    prepare_in_background(trackers, warn)  # import the tracking clients while data loads
    check_batch(cfg.train.batch_size, ranks.world_size)
    ranks.share((cfg, resume))  # what the other ranks train
    device, threads = configure_torch(cfg, ranks)
    precision, precision_why = training_precision(cfg.train.precision, device.type)
    dataset, splits = load_data(cfg.data, download_progress, dataset)
    ranks.barrier()  # the others load the data after this rank: any download or cache is written once
    check_loss_fits(cfg.train.loss, dataset)
    make_augmenter(cfg.data.augment, dataset.input_shape)  # an option too big for the images: refused before any record
    model = build_model(cfg, dataset, splits).to(device)

    run_id = run_id or new_run_id()
    run_dir = Path(cfg.output_dir) / run_id
    info = RunInfo(run_id=run_id, run_dir=run_dir, experiment=cfg.name, config=recorded_config(cfg),
                   tags={**this_process(), "job": job, **(tags or {})}, resumed=resume is not None, job=job,
                   group=group)
    val_source = dataset.val_source or f"{cfg.data.val_fraction:.0%} of train, stratified"
    counts = splits.class_counts()
    if isinstance(callbacks, RunCallbacks):
        callbacks.on_run_start(RunStart(run_id, dataset.name, dataset.class_names, splits.sizes(),
                                        dataset.input_shape, val_source, model_description(model, cfg),
                                        count_parameters(model),
                                        device_summary(device, precision, ranks),
                                        threads, resume is not None,
                                        dataset.train_source,
                                        dataset.test_source, counts, dataset.ingestion))
    for notice in dataset.notices:
        warn(notice)
    if cfg.train.batch_size % ranks.world_size:
        warn(f"train.batch_size = {cfg.train.batch_size} does not divide among {ranks.world_size} processes: each step "
             f"repeats {-cfg.train.batch_size % ranks.world_size} image(s) so that every process gets as many; a "
             f"multiple of {ranks.world_size} keeps the steps exact")
    cores = os.cpu_count() or 1
    if ranks.distributed and threads * ranks.local_world_size > cores:
        warn(f"threads: {threads} on each of this machine's {ranks.local_world_size} processes makes "
             f"{threads * ranks.local_world_size} threads on {cores} cores, which slows every step; set "
             f"threads={max(1, cores // ranks.local_world_size)}, or leave threads unset")
    if cfg.model.tta == "flip" and not cfg.data.augment.flip:
        warn("model.tta: flip averages each test image with its mirror image, but data.augment.flip is off, so the "
             "model never sees mirrored images in training (on Fashion-MNIST that cost 12 points of test accuracy: "
             "docs/speed.md); set data.augment.flip: true, or model.tta: none")
    if rare := rare_classes(dataset.class_names, counts["train"]):
        them = "them" if len(rare) > 1 else "it"
        remedies = [f"{key}: balanced" for key, value in (("train.class_weights", cfg.train.class_weights),
                                                          ("data.sampler", cfg.data.sampler)) if value == "balanced"]
        advice = (f"{' and '.join(remedies)} make{'s' if len(remedies) == 1 else ''} up for it" if remedies else
                  f"the model will rarely predict {them}: add images, or set train.class_weights: balanced or "
                  "data.sampler: balanced")
        warn(f"{len(rare)} class{'es have' if len(rare) > 1 else ' has'} under a fifth of the largest class's training "
             f"images: {', '.join(rare[:5])}{', ...' if len(rare) > 5 else ''}; {advice}")
    if dataset.skipped:
        shown = ", ".join(dataset.skipped[:SHOW_SKIPPED])
        more = f" and {len(dataset.skipped) - SHOW_SKIPPED:,} more" if len(dataset.skipped) > SHOW_SKIPPED else ""
        warn(f"skipped {len(dataset.skipped):,} unreadable or non-image files ({shown}{more}); all are listed in "
             "the run's data.json. Set data.strict: true to stop at the first one instead")
    with ExitStack() as recording:
        recording.enter_context(run_lock(run_dir, run_id))
        run = recording.enter_context(Run(info, trackers, finish_timeout=cfg.tracking.finish_timeout, warn=warn))
        docs = run_documents(cfg, dataset, splits, threads, count_parameters(model), val_source, model.pretrained)
        if docs.untracked_skipped and docs.untracked_skipped != (IMAGE_DIRTY,):
            count = len(docs.untracked_skipped)
            warn(f"{count} untracked file{' is' if count == 1 else 's are'} too big to record with the run (over "
                 f"{UNTRACKED_BUDGET / 1e6:.0f} MB together), so `trainlab reproduce` cannot rebuild its code: "
                 f"{untracked_advice(docs.untracked_skipped)}")
        started_ms = int(time.time() * 1000)
        try:
            if resume is None:
                record_start(run, cfg, docs)
            else:
                run.replace_history(resume["training"]["loop"]["history"])
            how = {"precision": precision, "precision_reason": precision_why, "device": str(device),
                   **ranks.tags(cfg.train.batch_size)}
            run.set_tags(how)
            docs.tags.update(how)  # the page says it too
            if resume is not None and resume.get("world_size", 1) != ranks.world_size:
                warn(f"run {run_id} trained on {resume.get('world_size', 1)} process(es) and continues on "
                     f"{ranks.world_size}: the shards, dropout masks and float sums change, so the result is not "
                     f"bit-identical to an uninterrupted run (docs/distributed.md)")
            # backends finish starting before the first step, not in the middle of the first epoch
            # where they would stall the training threads; a slow one (an unreachable server) is not waited for
            run.wait_started(timeout=STARTUP_WAIT_S if wait_for_trackers else 0.0)
            meta = {"config": info.config, "class_names": list(dataset.class_names), "run_id": run_id,
                    "trainlab_version": __version__, "background": background(splits.train_x),
                    "world_size": ranks.world_size}
            started = time.perf_counter()
            say = callbacks.on_stage if isinstance(callbacks, RunCallbacks) else (lambda text: None)
            trained_model, trained_on, augment, probe_facts = probe_or_full(model, splits, cfg, device, warn, say)
            result = train(trained_model, trained_on, cfg.train, seed=cfg.seed, device=device,
                           checkpoint_dir=run_dir / "checkpoints", checkpoint_meta=meta,
                           tracker=run, callbacks=callbacks, resume=resume, augment=augment,
                           sampler=cfg.data.sampler, precision=precision, ranks=ranks)
            trained = time.perf_counter()
            best = model_from_checkpoint(load_checkpoint(result.best_checkpoint)).to(device)
            test = evaluate_test(best, trained_on, splits, dataset.class_names, cfg.train.eval_batch_size)
            durations = {"train_seconds": trained - started, "test_seconds": time.perf_counter() - trained}
            failpoints.reached("evaluate")
            if cfg.report:  # MLflow's samples up to now, asked before its queue fills with the test's tables
                from trainlab.pages.run_page import sampled_system
                from trainlab.plots import with_figures

                system = sampled_system(trackers, started_ms, failed=run.failures)
                test = with_figures(test)  # drawn once: the page shows them, MLflow stores the same PNGs
            run.log_evaluation(test, prefix="test_")
            startup = {"seconds_to_first_step": result.first_step_at - process_start_time()} if result.first_step_at else {}
            run.log_summary({**{f"test_{k}": v for k, v in test.metrics.items()},
                             "best_epoch": result.best_epoch, f"best_{cfg.train.monitor}": result.best_value,
                             "epochs_run": len(result.history), **durations, **startup, **probe_facts})
            run.set_tags({"stop_reason": result.stop_reason})
            # the model before the page: the backends log it while this process draws the page
            run.log_model(result.best_checkpoint, {"epoch": result.best_epoch, cfg.train.monitor: result.best_value,
                                                   "class_names": list(dataset.class_names),
                                                   "input_shape": list(dataset.input_shape),
                                                   "example": splits.test_x[:EXAMPLES].tolist()})
            run.log_artifact(result.last_checkpoint, "checkpoints")
            if cfg.report:
                try:
                    from trainlab.pages.run_page import write_training_report

                    write_training_report(run, system, cfg, docs, result, test, splits, started_ms)
                except (OSError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # the model is trained and recorded: a page is not worth losing that
                    warn(f"the report page could not be written ({type(exc).__name__}: {exc}); make it later with "
                         f"`trainlab report {run_id}`")
        except OSError as exc:
            if exc.errno not in _DISK_ERRNOS:
                raise
            raise disk_full(exc, run_id, job, ranks, run_dir) from None
        except KeyboardInterrupt as exc:  # whether `--resume` can continue it: a checkpoint was written
            raise RunInterrupted.of(exc, resumable=(run_dir / "checkpoints" / LAST).is_file(),
                                    resume_with=ranks.resume_hint(run_id) if ranks.distributed else "") from None
        except RuntimeError as exc:  # another rank died or stopped answering: the run is killed
            if not lost_peer(exc):
                raise
            raise lost_rank(exc, run_id, ranks, (run_dir / "checkpoints" / LAST).is_file()) from None
        outcome = RunOutcome(run_id, run.run_dir, cfg, dataset, splits.sizes(), count_parameters(model), result,
                             test, [], {})
        ending = recording.pop_all()  # the backends' end, then the run folder's, then the lock
    if end_in_background:
        outcome.ending = threading.Thread(target=_end, args=(ending, run, outcome), name="trainlab-run-end",
                                          daemon=True)  # joined by its caller; a Ctrl-C does not wait for it
        outcome.ending.start()
    else:
        _end(ending, run, outcome)
    return outcome


def lost_rank(exc: Exception, run_id: str, ranks: Ranks, resumable: bool) -> RunInterrupted:
    """A collective that failed (a rank died, or did not answer within its timeout) as the run's interruption."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).strip())  # gloo's "[.../pair.cc:537] Read error ...: ..."
    why = text.splitlines()[0].split(". ")[0][:160] if text else type(exc).__name__
    then = f"continue it with {ranks.resume_hint(run_id)}" if resumable else "it has no checkpoint to resume from"
    return RunInterrupted(f"another rank of the {ranks.world_size} stopped answering ({why}); run {run_id} is marked "
                          f"killed: {then}", run_id=run_id, resumable=resumable, resume_with=ranks.resume_hint(run_id),
                          lost_rank="silent" if "timed out" in text.lower() else "died")


def device_summary(device: torch.device, precision: str, ranks: Ranks) -> str:
    """"cpu, bf16 autocast, 2 processes (gloo)": what the run's first line says it trains on."""
    amp = {"bf16": ", bf16 autocast", "fp16": ", fp16 autocast + loss scaling"}.get(precision, "")
    spread = f", {ranks.world_size} processes ({ranks.backend})" if ranks.distributed else ""
    return f"{device.type}{amp}{spread}"


def follow_experiment(ranks: Ranks) -> bool:
    """A rank other than 0: train its shard of the run rank 0 leads (``run_experiment``); record and write nothing.
    False when rank 0 had nothing (more) to train."""
    cfg, resume = ranks.share(None)
    if cfg is None:
        return False
    device, _ = configure_torch(cfg, ranks)
    precision, _ = training_precision(cfg.train.precision, device.type)
    ranks.barrier()  # rank 0 has loaded the data (downloaded, cached)
    dataset, splits = load_data(cfg.data, None, None)
    model = build_model(cfg, dataset, splits).to(device)
    quiet = lambda text: None  # noqa: E731
    trained_model, trained_on, augment, _ = probe_or_full(model, splits, cfg, device, quiet, quiet)
    train(trained_model, trained_on, cfg.train, seed=cfg.seed, device=device, checkpoint_dir=Path(cfg.output_dir),
          checkpoint_meta={}, resume=resume, augment=augment, sampler=cfg.data.sampler, precision=precision,
          ranks=ranks)
    return True


def _end(ending: ExitStack, run: Run, outcome: RunOutcome) -> None:
    ending.close()
    outcome.where.extend(run.where())
    outcome.tracking_failures.update(run.failures)
    _register(outcome)
    failpoints.reached("after-folder")


def _register(outcome: RunOutcome) -> None:
    """``register_as``: the run's model becomes a new version in MLflow's registry once MLflow holds the run.
    Every caller (the CLI, a sweep's trials, a library call) gets it; a refusal is a failure of the record."""
    cfg = outcome.config
    if not cfg.register_as or "mlflow" not in cfg.tracking.trackers or "mlflow" in outcome.tracking_failures:
        return
    from trainlab.mlflow_model import register  # MLflow's registry client, imported only when asked for
    from trainlab.runs import Record

    try:
        _, version = register(Record(cfg.tracking.mlflow_uri), outcome.run_id, cfg.register_as)
    except TrainlabError as exc:
        outcome.tracking_failures["model registry"] = str(exc)
        return
    outcome.where.append(f"registered as models:/{cfg.register_as}/{version}")
