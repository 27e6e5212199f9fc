from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import interrupt_at

from trainlab.checkpoint import load_checkpoint
from trainlab.errors import ConfigError, TrainingError
from trainlab.experiment import run_experiment
from trainlab.resume import resume_experiment, resume_target
from trainlab.tracking import read_history, read_run_record


def test_trains_well_above_chance_in_seconds(fast_config, tiny_npz: Path) -> None:
    out = run_experiment(fast_config("data.name=npz", f"data.path={tiny_npz}"))
    assert out.test.metrics["accuracy"] > 0.9  # chance is 0.25
    assert len(out.result.history) == 4
    assert out.result.history[-1]["train_loss"] < out.result.history[0]["train_loss"]


def test_digits_default_model_beats_chance_by_far(fast_config) -> None:
    out = run_experiment(fast_config("train.epochs=3"))
    assert out.test.metrics["accuracy"] > 0.8  # chance is 0.1


def test_same_config_and_seed_give_identical_history(fast_config, tiny_npz: Path) -> None:
    cfg = fast_config("data.name=npz", f"data.path={tiny_npz}", "model.arch=medium", "train.epochs=3")
    first = run_experiment(cfg)
    second = run_experiment(cfg)
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("epoch_seconds", "images_per_second")} for e in h]  # noqa: E731
    assert strip(first.result.history) == strip(second.result.history)  # bit-identical floats
    assert np.array_equal(first.test.probs, second.test.probs)
    other_seed = run_experiment(cfg.model_copy(update={"seed": 1}))
    assert strip(other_seed.result.history) != strip(first.result.history)


def test_resume_after_interrupt_equals_uninterrupted_run(fast_config, tiny_npz: Path) -> None:
    cfg = fast_config("data.name=npz", f"data.path={tiny_npz}", "model.arch=medium", "train.epochs=4",
                      "train.schedule.name=onecycle")
    whole = run_experiment(cfg)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, callbacks=interrupt_at(epoch=3, step=2), run_id="cut")
    run_dir = Path(cfg.output_dir) / "cut"
    assert read_run_record(run_dir)["status"] == "killed"
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 2
    resumed = resume_experiment(resume_target("cut", Path(cfg.output_dir)))
    assert resumed.run_id == "cut"
    assert [e["val_loss"] for e in resumed.result.history] == [e["val_loss"] for e in whole.result.history]
    assert resumed.test.metrics["log_loss"] == whole.test.metrics["log_loss"]
    assert [h["step"] for h in read_history(run_dir)] == [1, 2, 3, 4]
    assert read_run_record(run_dir)["status"] == "finished"
    assert resume_target("cut", Path(cfg.output_dir)).finished  # the CLI says so and does nothing


def test_early_stopping_on_target_and_patience(fast_config, tiny_npz: Path) -> None:
    base = ("data.name=npz", f"data.path={tiny_npz}", "train.epochs=20")
    hit = run_experiment(fast_config(*base, "train.early_stop.target=0.5"))
    assert hit.result.stop_reason == "target" and len(hit.result.history) < 20
    assert hit.result.history[-1]["val_accuracy"] >= 0.5
    # a learning rate of ~0 never improves the loss enough: patience ends it
    stale = run_experiment(fast_config(*base, "train.optimizer.lr=1e-12", "train.monitor=val_loss",
                                       "train.early_stop.patience=2", "train.early_stop.min_delta=0.1"))
    assert stale.result.stop_reason == "patience" and len(stale.result.history) == 3


def test_binary_loss_trains_a_two_class_problem(tmp_path: Path, fast_config) -> None:
    from conftest import make_images

    x, y = make_images(40, classes=2)
    np.savez(tmp_path / "two.npz", x=x, y=y)
    out = run_experiment(fast_config("data.name=npz", f"data.path={tmp_path / 'two.npz'}",
                                     "train.loss.name=binary_cross_entropy", "train.loss.label_smoothing=0.1"))
    assert out.test.probs.shape[1] == 2 and out.test.metrics["accuracy"] > 0.8


def test_binary_loss_on_ten_classes_is_refused_before_training(fast_config) -> None:
    with pytest.raises(ConfigError) as err:
        run_experiment(fast_config("train.loss.name=binary_cross_entropy"))
    assert str(err.value) == ("train.loss.name is 'binary_cross_entropy' but dataset 'digits' has 10 classes; "
                              "binary cross-entropy needs exactly 2: use cross_entropy")
    assert not Path("runs").exists()  # nothing was recorded


def test_onehot_targets_declared_with_integer_labels_and_the_reverse(tmp_path: Path, fast_config) -> None:
    with pytest.raises(ConfigError, match="targets is 'onehot' but dataset 'digits' stores integer class labels"):
        run_experiment(fast_config("train.loss.targets=onehot"))
    from conftest import make_images

    x, y = make_images(20)
    np.savez(tmp_path / "oh.npz", x=x, y=np.eye(4, dtype=np.uint8)[y])
    path = f"data.path={tmp_path / 'oh.npz'}"
    with pytest.raises(ConfigError, match="targets is 'index' but dataset 'npz' stores one-hot label rows"):
        run_experiment(fast_config("data.name=npz", path))
    assert run_experiment(fast_config("data.name=npz", path, "train.loss.targets=onehot")).test.metrics["accuracy"] > 0.5


def test_divergence_is_reported_not_hidden(fast_config, tiny_npz: Path) -> None:
    with pytest.raises(TrainingError, match=r"training diverged at epoch 1, step \d+: the loss is .* the learning "
                                            r"rate train.optimizer.lr = 1e\+12 is the likely cause: try 1e\+11"):
        run_experiment(fast_config("data.name=npz", f"data.path={tiny_npz}", "train.optimizer.name=sgd",
                                   "train.optimizer.lr=1e12", "model.layers=[{type: flatten}, {type: linear, out: 8}]"))
    record = read_run_record(next(Path("runs").iterdir()))
    assert record["status"] == "failed" and "diverged" in record["error"]


def test_a_loss_that_explodes_but_stays_finite_is_divergence_too(fast_config, tiny_npz: Path) -> None:
    """Adam at lr=1e6 gave finite losses of 1e12 and 10% accuracy, with exit 0: now it stops at once."""
    with pytest.raises(TrainingError, match=r"train.optimizer.lr = 1e\+06 is the likely cause: try 100000"):
        run_experiment(fast_config("data.name=npz", f"data.path={tiny_npz}", "train.optimizer.lr=1e6"))
    record = read_run_record(next(Path("runs").iterdir()))
    assert record["status"] == "failed" and "diverged at epoch 1" in record["error"]


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine", "onecycle"])
def test_schedules_run_and_change_the_rate(fast_config, tiny_npz: Path, schedule: str) -> None:
    extra = [] if schedule == "onecycle" else ["train.schedule.warmup_epochs=1"]
    out = run_experiment(fast_config("data.name=npz", f"data.path={tiny_npz}", f"train.schedule.name={schedule}",
                                     *extra))
    lrs = [e["lr"] for e in out.result.history]
    assert all(lr > 0 for lr in lrs)
    if schedule == "constant":
        assert lrs[1:] == [0.01] * 3
    else:
        assert lrs[-1] < max(lrs)


def test_record_has_every_part(fast_config, tiny_npz: Path) -> None:
    out = run_experiment(fast_config("data.name=npz", f"data.path={tiny_npz}"))
    names = {p.name for p in out.run_dir.iterdir()}
    assert {"run.json", "config.yaml", "metrics.jsonl", "summary.json", "environment.json", "data.json",
            "test_predictions.csv", "test_confusion_matrix.csv", "test_roc_curves.json", "checkpoints"} <= names
    record = read_run_record(out.run_dir)
    assert record["status"] == "finished" and record["params"]["train.epochs"] == "4"
    assert record["tags"]["dataset"] == "npz" and len(record["tags"]["data_fingerprint"]) == 16
    best = load_checkpoint(out.run_dir / "checkpoints" / "best.pt")
    assert best["class_names"] == ["nw", "ne", "sw", "se"] and best["config"]["data"]["name"] == "npz"
    assert best["model"]["input_shape"] == [1, 16, 16]
    assert torch.is_tensor(best["model"]["state_dict"]["scale"])


@pytest.mark.parametrize("preset", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_preset_trains_one_tiny_epoch(preset: Path, tiny_npz: Path) -> None:
    from trainlab.config import load_config

    if "transfer" in preset.name:  # a pretrained backbone takes RGB: the same images, in three channels
        with np.load(tiny_npz) as npz:
            rgb = {k: np.repeat(npz[k][:, None], 3, axis=1) if k.startswith("x") else npz[k] for k in npz.files}
        tiny_npz = tiny_npz.with_name("tiny_rgb.npz")
        np.savez(tiny_npz, **rgb)
    # batches of 16, so that one epoch of 216 images is a dozen steps whatever the preset's batch size
    cfg = load_config(preset, ["data.name=npz", f"data.path={tiny_npz}", "train.epochs=1", "tracking.trackers=[]",
                               "threads=1", "train.early_stop.target=null", "train.batch_size=16"])
    out = run_experiment(cfg)
    assert len(out.result.history) == 1 and np.isfinite(out.result.history[0]["train_loss"])
    assert out.test.metrics["accuracy"] > 0.25  # above chance after one epoch on visible classes


def test_a_one_cycle_whose_warm_up_is_exactly_one_step_runs() -> None:
    """torch's OneCycleLR divided by zero for 4 steps at pct_start 0.25 (a one-epoch try on a folder of 59 photos)."""
    import torch

    from trainlab.config import ScheduleConfig
    from trainlab.train import make_scheduler

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = make_scheduler(ScheduleConfig(name="onecycle", pct_start=0.25), optimizer, 1, 4)
    rates = []
    for _ in range(4):
        optimizer.step()
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    assert max(rates) == pytest.approx(0.1, rel=0.1) and rates[-1] < rates[1]


def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16_instructions() -> None:
    from trainlab.provenance import training_precision

    assert training_precision("auto", "cpu", {"cpu_flags": ["avx2", "avx512f"]})[0] == "fp32"
    assert training_precision("auto", "cpu", {"cpu_flags": ["avx512f", "avx512_bf16"]}) == \
        ("bf16", "the CPU has avx512_bf16")
    assert training_precision("auto", "cpu", {"cpu_flags": ["amx_bf16", "avx512_bf16"]})[0] == "bf16"
    assert training_precision("fp32", "cpu", {"cpu_flags": ["amx_bf16"]})[0] == "fp32"
    assert training_precision("bf16", "cpu", {"cpu_flags": []})[0] == "bf16"  # as asked (slow there, but honest)


@pytest.mark.slow
def test_bf16_training_reaches_fp32_accuracy_on_digits_and_resumes_to_the_same_result() -> None:
    """Autocast on the training steps only: the weights, the loss and evaluation stay fp32. Over three seeds bf16's
    test accuracy is within fp32's seed spread; an interrupted bf16 run resumes to the uninterrupted one's bits."""
    from conftest import build_fast_config

    accuracy = {}
    for precision in ("fp32", "bf16"):
        accuracy[precision] = [run_experiment(build_fast_config(
            "data.name=digits", "train.epochs=6", f"train.precision={precision}", f"seed={seed}",
            f"output_dir=runs-{precision}")).test.metrics["accuracy"] for seed in range(3)]
    fp32, bf16 = np.array(accuracy["fp32"]), np.array(accuracy["bf16"])
    assert abs(bf16.mean() - fp32.mean()) <= max(2 * fp32.std(ddof=1), 0.01), accuracy
    cfg = build_fast_config("data.name=digits", "train.epochs=4", "train.precision=bf16")
    whole = run_experiment(cfg)
    assert (whole.run_dir / "run.json").is_file()
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, callbacks=interrupt_at(epoch=3, step=2), run_id="cut")
    resumed = resume_experiment(resume_target("cut", Path(cfg.output_dir)))
    assert [e["val_loss"] for e in resumed.result.history] == [e["val_loss"] for e in whole.result.history]
    assert resumed.test.metrics["log_loss"] == whole.test.metrics["log_loss"]
