"""A saved model tested on its dataset's test split (`trainlab test`), and recorded as a run of its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainlab import __version__
from trainlab.checkpoint import load_checkpoint, model_from_checkpoint
from trainlab.config import flatten_config, recorded_config, validate_config
from trainlab.data import Dataset, create_dataset, data_fingerprint
from trainlab.data.fetch import DownloadProgress
from trainlab.errors import CheckpointError
from trainlab.evaluate import Evaluation, evaluate, evaluate_int8
from trainlab.experiment import configure_torch
from trainlab.run_setup import check_storage, new_run_id
from trainlab.tracking import Run, RunInfo, Tracker, create_trackers, prepare_in_background
from trainlab.tracking.process import this_process


@dataclass(frozen=True)
class EvaluationRecord:
    run_id: str
    where: list[str]  # where each tracking backend recorded the evaluation
    tracking_failures: dict[str, str]


def record_evaluation(payload: dict[str, Any], ev: Evaluation, source: str, *,
                      tracker_names: Sequence[str] | None = None, mlflow_uri: str | None = None,
                      trackers: Sequence[Tracker] | None = None, data_fingerprint: str | None = None,
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
    check_storage(cfg)
    trackers = list(trackers) if trackers is not None else create_trackers(cfg.tracking)
    prepare_in_background(trackers, warn)
    run_id = new_run_id()
    info = RunInfo(run_id=run_id, run_dir=Path(cfg.output_dir) / run_id, experiment=cfg.name,
                   config=recorded_config(cfg), tags=this_process(), job="evaluate")
    with Run(info, trackers, finish_timeout=cfg.tracking.finish_timeout, warn=warn) as run:
        run.set_tags({"job": "evaluate", "evaluated_run": str(payload.get("run_id") or "none"),
                      "model_source": source, "evaluated_epoch": str(payload.get("epoch") or "unknown"),
                      "precision": ev.precision, "dataset": cfg.data.name, "model": cfg.model.arch,
                      "trainlab_version": __version__,
                      # the test split it was evaluated on, so `trainlab compare` can pair it with other runs
                      **({"data_fingerprint": data_fingerprint[:16]} if data_fingerprint else {})})
        run.log_params(flatten_config(cfg))  # the evaluated model's config: its test split, for comparisons
        run.log_evaluation(ev, prefix="test_")
        run.log_summary({f"test_{k}": v for k, v in ev.metrics.items()})
    return EvaluationRecord(run_id, run.where(), dict(run.failures))


def evaluate_checkpoint(ref: str, runs_dir: Path, data_dir: Path | None = None,
                        download_progress: DownloadProgress | None = None,
                        tracking_uri: str | None = None,
                        int8: bool = False) -> tuple[dict[str, Any], Evaluation, str]:
    """Evaluate a saved model on its dataset's test split; returns the checkpoint, the evaluation and the data's
    fingerprint.

    With ``int8``, an int8 copy of the model is evaluated (calibrated on the first training images),
    with its label agreement, accuracy and speed against the fp32 model in the metrics.
    """
    from trainlab.runs import locate_checkpoint

    payload = load_checkpoint(locate_checkpoint(ref, runs_dir, tracking_uri), complete=True)
    cfg = validate_config(payload["config"])
    configure_torch(cfg)
    model = model_from_checkpoint(payload)  # a damaged checkpoint fails before the dataset loads
    dataset = checkpoint_dataset(payload, data_dir, download_progress)
    batch = cfg.train.eval_batch_size
    if int8:
        from trainlab.quantize import CALIBRATION_IMAGES

        calibration = dataset.train_x[:CALIBRATION_IMAGES]
        return payload, evaluate_int8(model, dataset.test_x, dataset.test_y, dataset.class_names, calibration,
                                      batch), data_fingerprint(dataset)
    return payload, evaluate(model, dataset.test_x, dataset.test_y, dataset.class_names, batch), \
        data_fingerprint(dataset)


def checkpoint_dataset(payload: dict[str, Any], data_dir: Path | None = None,
                       download_progress: DownloadProgress | None = None) -> Dataset:
    """The dataset a checkpoint's model was trained on (looked up in ``data_dir`` when given: for a folder of
    images, ``data_dir`` is that folder, moved or copied; its decode cache stays where the run kept it)."""
    data_cfg = validate_config(payload["config"]).data
    if data_dir is not None:
        key = "path" if data_cfg.name == "imagefolder" else "data_dir"
        data_cfg = data_cfg.model_copy(update={key: Path(data_dir).expanduser()})
    dataset = create_dataset(data_cfg, download_progress)
    input_shape = tuple(payload["model"]["input_shape"])
    if input_shape != tuple(dataset.input_shape):
        raise CheckpointError(
            f"the model takes images of shape {input_shape} but dataset {dataset.name!r} has {dataset.input_shape}"
        )
    return dataset
