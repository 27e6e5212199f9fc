"""One experiment end to end: data -> model -> train -> evaluate, recorded by the trackers.

This is the glue `trainlab train`, `all`, `test` (and later sweeps and
reproduction) call; it returns results and prints nothing.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from trainlab import __version__
from trainlab.checkpoint import LAST, load_checkpoint, model_from_checkpoint, resolve_checkpoint
from trainlab.config import Config, DataConfig, LossConfig, config_to_dict, flatten_config, validate_config
from trainlab.data import Dataset, Splits, create_dataset, split_dataset
from trainlab.data.fetch import DownloadProgress
from trainlab.errors import CheckpointError, ConfigError
from trainlab.evaluate import Evaluation, evaluate, evaluate_int8
from trainlab.models import Classifier, count_parameters, create_model
from trainlab.provenance import environment, git_state
from trainlab.tracking import Run, RunInfo, Tracker, create_trackers, prepare_in_background, read_run_record
from trainlab.train import TrainCallbacks, TrainResult, train


STARTUP_WAIT_S = 15.0


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    run_dir: Path
    config: Config
    dataset: Dataset
    sizes: dict[str, int]
    parameters: int
    result: TrainResult
    test: Evaluation
    where: list[str]  # where each tracking backend recorded the run
    tracking_failures: dict[str, str]  # backend -> what went wrong (empty when all recorded)


def new_run_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def process_start_time() -> float:
    """When this process started (time.time() scale): start-up latency is measured from here."""
    import psutil

    return psutil.Process().create_time()


def configure_torch(cfg: Config) -> tuple[torch.device, int]:
    """Pin threads and determinism (both change float results); pick the device."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but torch sees no CUDA GPU on this machine; set device: cpu or auto")
    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
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


def load_data(cfg: DataConfig, progress: DownloadProgress | None = None,
              dataset: Dataset | None = None) -> tuple[Dataset, Splits]:
    """Load (unless already loaded) and split."""
    dataset = dataset or create_dataset(cfg, progress)
    return dataset, split_dataset(dataset, cfg.val_fraction, cfg.split_seed)


def build_model(cfg: Config, dataset: Dataset, splits: Splits) -> Classifier:
    """The configured network, seeded, normalising inputs with the training split's pixel statistics."""
    num_outputs = 1 if cfg.train.loss.name == "binary_cross_entropy" else dataset.num_classes
    # torch, not numpy: numpy's std of 50k images builds float64 temporaries (0.9 s against 0.2 s)
    std, mean = torch.std_mean(torch.from_numpy(splits.train_x).float(), dim=(0, 2, 3), correction=0)
    torch.manual_seed(cfg.seed)
    return create_model(cfg.model, dataset.input_shape, num_outputs, mean.tolist(), std.clamp(min=1.0).tolist())


def data_fingerprint(dataset: Dataset) -> str:
    """One digest over the source files' SHA-256s: equal fingerprints, equal data."""
    joined = "\n".join(f"{name} {sha}" for name, sha in sorted(dataset.files.items()))
    return hashlib.sha256(joined.encode()).hexdigest()


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
) -> RunOutcome:
    """Train, evaluate on the test split and record.

    ``resume`` is a last.pt payload to continue from; ``dataset`` one already loaded from
    ``cfg.data``; ``warn`` receives tracking problems (training goes on regardless).
    """
    trackers = list(trackers) if trackers is not None else create_trackers(cfg.tracking)
    prepare_in_background(trackers, warn)  # import the tracking clients while data loads
    device, threads = configure_torch(cfg)
    dataset, splits = load_data(cfg.data, download_progress, dataset)
    check_loss_fits(cfg.train.loss, dataset)
    model = build_model(cfg, dataset, splits).to(device)

    run_id = run_id or new_run_id()
    info = RunInfo(run_id=run_id, run_dir=Path(cfg.output_dir) / run_id, experiment=cfg.name,
                   config=config_to_dict(cfg), resumed=resume is not None)
    with Run(info, trackers, finish_timeout=cfg.tracking.finish_timeout, warn=warn) as run:
        if resume is None:
            record_start(run, cfg, dataset, splits, threads, count_parameters(model))
        else:
            run.replace_history(resume["training"]["loop"]["history"])
        # backends finish starting before the first step, not in the middle of the first epoch
        # where they would stall the training threads; a slow one (an unreachable server) is not waited for
        run.wait_started(timeout=STARTUP_WAIT_S)
        meta = {"config": config_to_dict(cfg), "class_names": list(dataset.class_names),
                "run_id": run_id, "trainlab_version": __version__}
        result = train(model, splits, cfg.train, seed=cfg.seed, device=device,
                       checkpoint_dir=run.run_dir / "checkpoints", checkpoint_meta=meta,
                       tracker=run, callbacks=callbacks, resume=resume)
        best = model_from_checkpoint(load_checkpoint(result.best_checkpoint)).to(device)
        test = evaluate(best, splits.test_x, splits.test_y, dataset.class_names, cfg.train.eval_batch_size)
        run.log_evaluation(test, prefix="test_")
        startup = {"seconds_to_first_step": result.first_step_at - process_start_time()} if result.first_step_at else {}
        run.log_summary({**{f"test_{k}": v for k, v in test.metrics.items()},
                         "best_epoch": result.best_epoch, f"best_{cfg.train.monitor}": result.best_value,
                         "epochs_run": len(result.history), **startup})
        run.set_tags({"stop_reason": result.stop_reason})
        run.log_model(result.best_checkpoint, {"epoch": result.best_epoch, cfg.train.monitor: result.best_value,
                                               "class_names": list(dataset.class_names)})
        run.log_artifact(result.last_checkpoint, "checkpoints")
    return RunOutcome(run_id, run.run_dir, cfg, dataset, splits.sizes(), count_parameters(model), result, test,
                      run.where(), dict(run.failures))


def record_start(run: Run, cfg: Config, dataset: Dataset, splits: Splits, threads: int, parameters: int) -> None:
    """Everything known before the first step: config, code, data and environment."""
    git = git_state()
    # short aliases make filters read naturally: params.model = 'small'
    aliases = {"model": cfg.model.arch, "dataset": cfg.data.name, "optimizer": cfg.train.optimizer.name,
               "lr": str(cfg.train.optimizer.lr), "batch_size": str(cfg.train.batch_size),
               "epochs": str(cfg.train.epochs)}
    run.log_params({**flatten_config(cfg), **aliases})
    run.set_tags({
        "dataset": dataset.name,
        "model": cfg.model.arch,
        "git_commit": git.commit or "none",
        "git_dirty": str(git.dirty).lower(),
        "trainlab_version": __version__,
        "data_fingerprint": data_fingerprint(dataset)[:16],
        "seed": str(cfg.seed),
    })
    run.log_dict("config.yaml", config_to_dict(cfg))
    run.log_dict("environment.json", environment(threads))
    run.log_dict("data.json", {
        "name": dataset.name, "location": dataset.location, "files_sha256": dataset.files,
        "fingerprint": data_fingerprint(dataset), "splits": splits.sizes(),
        "class_names": list(dataset.class_names), "input_shape": list(dataset.input_shape),
    })
    run.log_dict("model.json", {"arch": cfg.model.arch, "parameters": parameters})
    if git.diff:
        run.log_text("git.diff", git.diff)


def resume_experiment(run_ref: str, runs_dir: Path, **kwargs: Any) -> RunOutcome:
    """Continue a run from its last checkpoint, with the config it was started with."""
    last_path = resolve_checkpoint(run_ref, runs_dir, which=LAST)
    payload = load_checkpoint(last_path)
    if "training" not in payload:
        raise CheckpointError(f"{str(last_path)!r} is a best-model checkpoint; resume needs a run's last.pt")
    cfg = validate_config(payload["config"])
    run_dir = last_path.parent.parent
    if read_run_record(run_dir).get("status") == "finished":
        raise ConfigError(f"run {payload['run_id']!r} already finished; there is nothing to resume")
    cfg = cfg.model_copy(update={"output_dir": run_dir.parent})
    return run_experiment(cfg, resume=payload, run_id=payload["run_id"], **kwargs)


@dataclass(frozen=True)
class EvaluationRecord:
    run_id: str
    where: list[str]  # where each tracking backend recorded the evaluation
    tracking_failures: dict[str, str]


def record_evaluation(payload: dict[str, Any], ev: Evaluation, source: str, *,
                      tracker_names: Sequence[str] | None = None, mlflow_uri: str | None = None,
                      trackers: Sequence[Tracker] | None = None,
                      warn: Callable[[str], None] | None = None) -> EvaluationRecord:
    """Record a test of a saved model as a run of its own (job "evaluate"), tagged with the run that trained it.

    The trackers are those the model was trained with unless ``tracker_names`` / ``mlflow_uri`` say otherwise.
    """
    tracking = dict(payload["config"].get("tracking") or {})
    if tracker_names is not None:
        tracking["trackers"] = list(tracker_names)
    if mlflow_uri is not None:
        tracking["mlflow_uri"] = mlflow_uri
    cfg = validate_config({**payload["config"], "tracking": tracking})
    trackers = list(trackers) if trackers is not None else create_trackers(cfg.tracking)
    prepare_in_background(trackers, warn)
    run_id = new_run_id()
    info = RunInfo(run_id=run_id, run_dir=Path(cfg.output_dir) / run_id, experiment=cfg.name,
                   config=config_to_dict(cfg), job="evaluate")
    with Run(info, trackers, finish_timeout=cfg.tracking.finish_timeout, warn=warn) as run:
        run.set_tags({"job": "evaluate", "evaluated_run": str(payload.get("run_id") or "none"),
                      "model_source": source, "evaluated_epoch": str(payload.get("epoch") or "unknown"),
                      "precision": ev.precision, "dataset": cfg.data.name, "model": cfg.model.arch,
                      "trainlab_version": __version__})
        run.log_evaluation(ev, prefix="test_")
        run.log_summary({f"test_{k}": v for k, v in ev.metrics.items()})
    return EvaluationRecord(run_id, run.where(), dict(run.failures))


def evaluate_checkpoint(ref: str, runs_dir: Path, data_dir: Path | None = None,
                        download_progress: DownloadProgress | None = None,
                        tracking_uri: str | None = None, int8: bool = False) -> tuple[dict[str, Any], Evaluation]:
    """Evaluate a saved model on its dataset's test split; returns the checkpoint and the evaluation.

    With ``int8``, an int8 copy of the model is evaluated (calibrated on the first training images),
    with its label agreement, accuracy and speed against the fp32 model in the metrics.
    """
    from trainlab.runs import locate_checkpoint

    payload = load_checkpoint(locate_checkpoint(ref, runs_dir, tracking_uri))
    cfg = validate_config(payload["config"])
    configure_torch(cfg)
    dataset = checkpoint_dataset(payload, data_dir, download_progress)
    model = model_from_checkpoint(payload)
    batch = cfg.train.eval_batch_size
    if int8:
        from trainlab.quantize import CALIBRATION_IMAGES

        calibration = dataset.train_x[:CALIBRATION_IMAGES]
        return payload, evaluate_int8(model, dataset.test_x, dataset.test_y, dataset.class_names, calibration, batch)
    return payload, evaluate(model, dataset.test_x, dataset.test_y, dataset.class_names, batch)


def checkpoint_dataset(payload: dict[str, Any], data_dir: Path | None = None,
                       download_progress: DownloadProgress | None = None) -> Dataset:
    """The dataset a checkpoint's model was trained on (looked up in ``data_dir`` when given)."""
    data_cfg = validate_config(payload["config"]).data
    if data_dir is not None:
        data_cfg = data_cfg.model_copy(update={"data_dir": data_dir})
    dataset = create_dataset(data_cfg, download_progress)
    input_shape = tuple(payload["model"]["input_shape"])
    if input_shape != tuple(dataset.input_shape):
        raise CheckpointError(
            f"the model takes images of shape {input_shape} but dataset {dataset.name!r} has {dataset.input_shape}"
        )
    return dataset
