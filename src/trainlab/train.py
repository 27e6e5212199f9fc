"""The training loop: seeded, checkpointed every epoch, resumable to the same result.

Data stays in memory as uint8 tensors; each batch is sliced by index and
normalised inside the model, so there is no per-sample Python on the hot path.
Every epoch reseeds from (seed, epoch), which is what makes a resumed run draw
the same batches and dropout masks as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn import functional as F

from trainlab import failpoints
from trainlab.augment import make_augmenter
from trainlab.checkpoint import BEST, LAST, model_payload, save_checkpoint
from trainlab.config import AugmentConfig, LossConfig, OptimizerConfig, ScheduleConfig, TrainConfig
from trainlab.data import Splits
from trainlab.distributed import Ranks
from trainlab.errors import TrainingError
from trainlab.metrics import epoch_metrics


class MetricSink(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def flush(self) -> None: ...


class TrainCallbacks:
    """Hooks for progress display, and for a sweep to stop a weak trial; the defaults do nothing."""

    def on_train_start(self, epochs: int, steps_per_epoch: int, first_epoch: int) -> None: ...
    def on_step(self, epoch: int, step: int, loss: float, images: int) -> None: ...
    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def stop_reason(self, epoch: int, metrics: dict[str, float]) -> str | None:
        """A reason to stop after this epoch (a sweep's pruner: "pruned"), or None to go on."""
        return None


@dataclass
class LoopState:
    """What the loop carries from epoch to epoch; saved in last.pt."""

    epoch: int = 0  # last completed epoch
    history: list[dict[str, float]] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None
    stale_epochs: int = 0
    stop_reason: str | None = None
    first_loss: float | None = None  # of the run's first step: the yardstick for divergence


@dataclass(frozen=True)
class TrainResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_value: float
    stop_reason: str  # "completed", "patience", "target", or a callback's ("pruned")
    best_checkpoint: Path
    last_checkpoint: Path
    first_step_at: float | None = None  # time.time() when this call's first optimizer step ended
    process_memory: list[tuple[float, float]] = field(default_factory=list)  # (time.time(), PROCESS_RSS) per epoch


PROCESS_RSS = "process_rss_mb"  # logged each epoch beside the history (not in it: it is not reproducible)


def process_rss_mb() -> float:
    """This process's resident memory in MB: what the run holds, not the whole machine."""
    import psutil

    return float(psutil.Process().memory_info().rss) / 1e6


DIVERGED = 100.0  # a step loss this many times the first step's (at least 1.0) means training blew up


def check_loss(loss: float, state: LoopState, epoch: int, step: int, lr: float) -> None:
    """Stop at the first step whose loss is NaN, infinite, or exploded: later epochs would only waste time."""
    if state.first_loss is None and math.isfinite(loss):
        state.first_loss = loss
    limit = DIVERGED * max(state.first_loss or 1.0, 1.0)
    if not math.isfinite(loss) or loss > limit:
        started = f" (the first step's was {state.first_loss:.3g})" if state.first_loss is not None else ""
        raise TrainingError(
            f"training diverged at epoch {epoch}, step {step + 1}: the loss is {loss:.4g}{started}; the learning "
            f"rate train.optimizer.lr = {lr:g} is the likely cause: try {lr / 10:g}, or add warm-up"
        )


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


AUGMENT_STREAM = 7_919  # offsets the augmentation's seed from the epoch's, so dropout draws what it drew before


def balanced_class_weights(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """n / (classes * count) per class, scikit-learn's "balanced" rule; a class with no image gets 0."""
    counts = torch.bincount(y, minlength=num_classes).double()
    weights = torch.where(counts > 0, len(y) / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    return weights.float()


def epoch_order(y: torch.Tensor, sampler: str, num_classes: int) -> torch.Tensor:
    """The epoch's sample order (seeded by the caller): a permutation, or class-balanced draws with replacement."""
    if sampler == "balanced":
        counts = torch.bincount(y, minlength=num_classes).double()
        per_image = (1.0 / counts.clamp(min=1))[y]
        return torch.multinomial(per_image, len(y), replacement=True)
    return torch.randperm(len(y))


def make_loss(cfg: LossConfig, class_weights: torch.Tensor | None = None) -> nn.Module:
    if cfg.name == "binary_cross_entropy":
        return _SmoothedBCE(cfg.label_smoothing, class_weights)
    return nn.CrossEntropyLoss(weight=class_weights, label_smoothing=cfg.label_smoothing)


class _SmoothedBCE(nn.Module):
    """Binary cross-entropy on a one-logit head, targets pulled towards 0.5 by ``smoothing``."""

    def __init__(self, smoothing: float, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.smoothing = smoothing
        self.class_weights = class_weights

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = y.float() * (1.0 - self.smoothing) + 0.5 * self.smoothing
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)[y]
        return F.binary_cross_entropy_with_logits(logits[:, 0], target, weight=weight)


def param_groups(model: nn.Module, cfg: TrainConfig) -> Any:
    """The parameters to train: a pretrained backbone's at train.backbone_lr_scale of the head's rate; frozen
    ones (a linear probe's body, the blocks before train.last_n_blocks) left out."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    backbone = getattr(model, "backbone", None)
    if backbone is None or cfg.backbone_lr_scale == 1.0:
        return trainable
    body = {id(p) for p in backbone.parameters()}
    groups = [{"params": [p for p in trainable if id(p) in body], "lr": cfg.optimizer.lr * cfg.backbone_lr_scale},
              {"params": [p for p in trainable if id(p) not in body], "lr": cfg.optimizer.lr}]
    return [g for g in groups if g["params"]]


def make_optimizer(cfg: OptimizerConfig, params: Any) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: ScheduleConfig, optimizer: torch.optim.Optimizer, epochs: int,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule, with optional linear warm-up in front."""
    from torch.optim import lr_scheduler as S

    total = epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.name == "onecycle":
        # torch's OneCycleLR divides by zero when the warm-up ends on exactly one step (4 steps at 0.25):
        # a step and a half instead, so a one-epoch try on a small folder runs
        pct_start = 1.5 / total if abs(cfg.pct_start * total - 1) < 1e-9 and total > 1.5 else cfg.pct_start
        return S.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                            total_steps=total, pct_start=pct_start)
    if cfg.name == "step":
        main: S.LRScheduler = S.StepLR(optimizer, step_size=cfg.step_size * steps_per_epoch, gamma=cfg.gamma)
    elif cfg.name == "cosine":
        main = S.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup))
    else:
        main = S.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup == 0:
        return main
    ramp = S.LinearLR(optimizer, start_factor=0.01, end_factor=1.0, total_iters=warmup)
    return S.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def is_better(value: float, best: float | None, monitor: str, min_delta: float) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    if monitor == "val_loss":
        return value < best - min_delta
    return value > best + min_delta


def target_reached(value: float, target: float | None, monitor: str) -> bool:
    if target is None or math.isnan(value):
        return False
    return value <= target if monitor == "val_loss" else value >= target


def train(
    model: nn.Module,
    data: Splits,
    cfg: TrainConfig,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    checkpoint_dir: Path,
    checkpoint_meta: dict[str, Any],
    tracker: MetricSink | None = None,
    callbacks: TrainCallbacks | None = None,
    resume: dict[str, Any] | None = None,
    augment: AugmentConfig | None = None,
    sampler: str = "shuffle",
    precision: str = "fp32",
    ranks: Ranks | None = None,
) -> TrainResult:
    """Train ``model`` on ``data``; write best.pt and last.pt into ``checkpoint_dir`` every epoch.

    ``checkpoint_meta`` (config, class names, ...) is stored in every checkpoint.
    ``resume`` is the payload of a last.pt to continue from. ``augment`` changes training batches only;
    ``sampler`` "balanced" draws every class equally often. ``precision`` "bf16" runs the training steps' forward
    pass under bfloat16 autocast (weights, optimizer state and the loss stay fp32; no loss scaling is needed);
    "fp16" under float16 autocast, with a GradScaler's loss scaling.

    ``ranks`` (several processes under torchrun): each rank steps on its shard of every batch, DDP averages the
    gradients, and rank 0 alone validates, checkpoints, logs and calls ``callbacks``; the others follow its
    decisions. ``cfg.batch_size`` is the global batch either way, so the steps and the schedule do not depend on
    the number of processes.
    """
    ranks = ranks or Ranks()
    callbacks = callbacks or TrainCallbacks()
    x_train = torch.from_numpy(data.train_x).to(device)
    y_train = torch.from_numpy(data.train_y).to(device)
    n = len(y_train)
    batch = min(cfg.batch_size, n)
    # a final batch of one sample would break BatchNorm; it is skipped (another sample each epoch)
    steps = n // batch + (1 if n % batch > 1 else 0)

    num_classes = len(data.class_names)
    weights = balanced_class_weights(y_train.cpu(), num_classes).to(device) if cfg.class_weights == "balanced" else None
    loss_fn = make_loss(cfg.loss, weights)
    augmenter = make_augmenter(augment, tuple(data.train_x.shape[1:])) if augment is not None else None
    optimizer = make_optimizer(cfg.optimizer, param_groups(model, cfg))
    scheduler = make_scheduler(cfg.schedule, optimizer, cfg.epochs, steps)
    device_type = torch.device(device).type
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device_type, enabled=precision == "fp16")  # off: every call passes through
    state = LoopState()
    if resume is not None:
        model.load_state_dict(resume["model"]["state_dict"])
        optimizer.load_state_dict(resume["training"]["optimizer"])
        scheduler.load_state_dict(resume["training"]["scheduler"])
        if "scaler" in resume["training"]:
            scaler.load_state_dict(resume["training"]["scaler"])
        state = LoopState(**resume["training"]["loop"])
    net = ranks.wrap(model, torch.device(device))  # the model under DDP; checkpoints save the model itself
    best_path, last_path = checkpoint_dir / BEST, checkpoint_dir / LAST
    first_step_at: float | None = None
    memory: list[tuple[float, float]] = []
    callbacks.on_train_start(cfg.epochs, steps, state.epoch + 1)
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if state.stop_reason:
            break
        # reseed from (seed, epoch): the same batches and dropout masks after a resume
        torch.manual_seed(epoch_seed(seed, epoch))
        order = epoch_order(y_train.cpu(), sampler, num_classes).to(device)  # the same on every rank
        if ranks.rank:  # a rank's own dropout masks and augmentations; rank 0 draws what one process draws
            torch.manual_seed(epoch_seed(seed, epoch) + ranks.seed_offset())
        draws = torch.Generator().manual_seed(epoch_seed(seed, epoch) + AUGMENT_STREAM + ranks.seed_offset())
        net.train()
        started = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        for step in range(steps):
            idx = ranks.shard(order[step * batch:(step + 1) * batch])
            xb, yb = x_train[idx], y_train[idx]
            if augmenter is not None:
                xb = augmenter(xb, draws)
            # forward, backward, update
            with torch.autocast(device_type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
                logits = net(xb)
            loss = loss_fn(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            lr = optimizer.param_groups[-1]["lr"]  # the rate this step used (the head's, on a backbone)
            scheduler.step()
            # running train loss and accuracy, without a sync per step
            with torch.no_grad():
                loss_sum += loss.detach() * len(yb)
                pred = logits.argmax(1) if logits.shape[1] > 1 else (logits[:, 0] > 0).long()
                correct += (pred == yb).sum()
            seen += len(yb)
            if first_step_at is None:
                first_step_at = time.time()
            # a sync per step (the progress bar shows it anyway); over ranks, the global batch's loss, so every
            # rank stops at the same step if it diverges
            loss_value = ranks.mean(loss.detach())
            check_loss(loss_value, state, epoch, step, cfg.optimizer.lr)
            callbacks.on_step(epoch, step, loss_value, len(yb))
            if step == 0 and epoch == min(2, cfg.epochs):
                failpoints.reached("mid-epoch")
        train_seconds = time.perf_counter() - started
        if ranks.distributed:  # the epoch's totals over every rank's shard
            totals = ranks.total(torch.stack([loss_sum, correct.double(), torch.tensor(float(seen), device=device,
                                                                                         dtype=torch.float64)]))
            loss_sum, correct, seen = totals[0], totals[1], int(totals[2])
        if not ranks.leads:  # rank 0 validates, checkpoints and decides; the others take its state
            state = ranks.share(None)
            continue
        train_loss = float(loss_sum) / seen

        # validate
        metrics = {
            "train_loss": train_loss,
            "train_accuracy": float(correct) / seen,
            **epoch_metrics(model, data.val_x, data.val_y, cfg.eval_batch_size, "val"),
            "lr": lr,
            "epoch_seconds": time.perf_counter() - started,
            "images_per_second": seen / train_seconds,
        }
        state.epoch = epoch
        state.history.append(metrics)
        memory.append((time.time(), process_rss_mb()))
        if tracker is not None:
            tracker.log_metrics({**metrics, PROCESS_RSS: memory[-1][1]}, step=epoch)

        # keep the best checkpoint, then decide whether to stop
        value = metrics[cfg.monitor]
        if is_better(value, state.best_value, cfg.monitor, cfg.early_stop.min_delta):
            state.best_value, state.best_epoch, state.stale_epochs = value, epoch, 0
            save_checkpoint(best_path, {**checkpoint_meta, "kind": "best", "epoch": epoch, "metrics": metrics,
                                        "model": model_payload(model)})
        else:
            state.stale_epochs += 1
        asked = callbacks.stop_reason(epoch, metrics)  # a sweep reports every epoch to its pruner
        if target_reached(value, cfg.early_stop.target, cfg.monitor):
            state.stop_reason = "target"
        elif cfg.early_stop.patience and state.stale_epochs >= cfg.early_stop.patience:
            state.stop_reason = "patience"
        elif epoch < cfg.epochs and asked:
            state.stop_reason = asked

        # the last checkpoint carries everything --resume needs
        save_checkpoint(last_path, {
            **checkpoint_meta, "kind": "last", "epoch": epoch, "metrics": metrics,
            "model": model_payload(model),
            "training": {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "loop": state.__dict__, **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {})},
        })
        ranks.share(state)  # the other ranks stop, or go on, with rank 0
        if tracker is not None:
            tracker.flush()  # hand this epoch to the tracking backends
        callbacks.on_epoch_end(epoch, metrics)

    if state.best_epoch is None:
        raise TrainingError(f"no epoch produced a finite {cfg.monitor}; check the data and train.optimizer.lr")
    return TrainResult(
        history=list(state.history),
        best_epoch=state.best_epoch,
        best_value=float(state.best_value),  # type: ignore[arg-type]
        stop_reason=state.stop_reason or "completed",
        best_checkpoint=best_path,
        last_checkpoint=last_path,
        first_step_at=first_step_at,
        process_memory=memory,
    )
