"""What a sweep costs beyond its training, what pruning saves, and what a second worker buys.

1. overhead: a 20-trial random sweep on digits with MLflow + W&B (offline) on, run by
   `trainlab sweep` (trials in the worker process), against a process-per-trial baseline:
   a loop of `trainlab train` commands over the same configurations, in the same run.
   Per-trial overhead = the trial's wall time (to the next trial's start, so asking and
   telling the study count) minus its training loop and its test evaluation, as the run
   records them (train_seconds, test_seconds), read back through MlflowClient and the study.
2. pruning: random search without pruning spends its full epoch budget; bayes (TPE) with
   ASHA pruning runs the same number of configurations. Prints the epochs each spent, and
   after how many epochs each first reached the best validation accuracy random found.
3. workers: the same grid with --workers 1 and --workers 2 (threads = cores / workers).

    python bench/sweep.py [--parts overhead,pruning,workers] [--trials 20] [--baseline 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import run_main

TRAINLAB = str(Path(sys.executable).with_name("trainlab"))
LR_SPACE = {"train.optimizer.lr": {"min": 0.0003, "max": 0.03, "distribution": "log_uniform_values"}}


def trainlab(workdir: Path, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([TRAINLAB, *args], cwd=workdir, capture_output=True, text=True,
                            env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    if result.returncode != 0:
        raise SystemExit(f"`trainlab {' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return time.perf_counter() - started, result.stdout


def sweep_id(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("sweep sweep-")).split()[1].rstrip(":")


def client(workdir: Path):  # noqa: ANN201
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")


def busy_seconds(c, run_id: str) -> tuple[float, float]:  # noqa: ANN001
    """(training, test evaluation) of one run, from its record: the training loop (epochs with their
    validation and checkpoints) and the test evaluation (best model loaded, inference, metrics)."""
    metrics = c.get_run(run_id).data.metrics
    return metrics["train_seconds"], metrics["test_seconds"]


def trial_runs(c, sid: str) -> dict[str, str]:  # noqa: ANN001
    """trainlab run id -> MLflow run id, for a sweep's trials."""
    found = c.search_runs([e.experiment_id for e in c.search_experiments()],
                          filter_string=f"tags.sweep = '{sid}' and tags.job = 'trial'", max_results=1000)
    return {r.data.tags["trainlab_run_id"]: r.info.run_id for r in found}


def study_trials(workdir: Path, sid: str) -> list:  # noqa: ANN201
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(workdir / "runs" / sid / "study.journal")))
    return sorted(optuna.load_study(study_name=sid, storage=storage).get_trials(), key=lambda t: t.datetime_start)


def overhead(trials: int, baseline: int, epochs: int) -> None:
    common = [f"train.epochs={epochs}", "train.early_stop.patience=null", "--tracker", "mlflow", "--tracker", "wandb"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "s.yaml").write_text(yaml.safe_dump({"method": "random", "metric": {"name": "val_accuracy"},
                                                     "run_cap": trials, "parameters": LR_SPACE}))
        wall, out = trainlab(work, "sweep", "s.yaml", *common, "--quiet")
        sid = sweep_id(out)
        c = client(work)
        runs = trial_runs(c, sid)
        done = study_trials(work, sid)
        in_process, configs = [], []
        for i, t in enumerate(done):
            end = done[i + 1].datetime_start if i + 1 < len(done) else t.datetime_complete
            train, infer = busy_seconds(c, runs[f"{sid}-t{t.number:03d}"])
            in_process.append((end - t.datetime_start).total_seconds() - train - infer)
            configs.append(t.params["train.optimizer.lr"])
        spans = [(b.datetime_start - a.datetime_start).total_seconds() for a, b in zip(done[1:], done[2:])]
        (work / "untracked").mkdir()
        (work / "untracked" / "s.yaml").write_text((work / "s.yaml").read_text())
        _, out = trainlab(work / "untracked", "sweep", "s.yaml", *common[:-4], "--tracker", "none", "--quiet")
        bare = study_trials(work / "untracked", sweep_id(out))
        bare_spans = [(b.datetime_start - a.datetime_start).total_seconds() for a, b in zip(bare[1:], bare[2:])]
        per_process = []
        for lr in configs[:baseline]:
            seconds, out = trainlab(work, "train", *common, f"train.optimizer.lr={lr}", "--quiet")
            run_id = next(line.split()[1] for line in out.splitlines() if line.startswith("run ") and "recorded" in line)
            mlflow_id = c.search_runs([e.experiment_id for e in c.search_experiments()],
                                      filter_string=f"tags.trainlab_run_id = '{run_id}'")[0].info.run_id
            train, infer = busy_seconds(c, mlflow_id)
            per_process.append(seconds - train - infer)
    print(f"\n1. per-trial overhead (wall - training loop - test evaluation, as each run records them), digits, "
          f"{epochs} epochs, MLflow + W&B offline")
    print(f"  trainlab sweep, {trials} trials in one process  median {statistics.median(in_process):.2f} s  "
          f"mean {statistics.fmean(in_process):.2f} s  max {max(in_process):.2f} s  (first trial "
          f"{in_process[0]:.2f} s: imports and tracker start-up)")
    print(f"  whole sweep: {wall:.1f} s wall for {trials} trials, process start and parent run included")
    print(f"  process per trial ({baseline} x `trainlab train`)  median {statistics.median(per_process):.2f} s  "
          f"mean {statistics.fmean(per_process):.2f} s")
    print(f"  what tracking costs in all (it shares the cores with training, so part of it is inside the training "
          f"time):\n    mean trial {statistics.fmean(spans):.2f} s with MLflow + W&B, {statistics.fmean(bare_spans):.2f} s "
          f"with --tracker none (trials after the first two)")


def pruning(epochs: int, budget: int, pruner: str) -> None:
    """Random search (no pruning) vs TPE + pruning: epochs to reach random's best validation accuracy."""
    space = {"train.optimizer.lr": {"min": 0.0001, "max": 0.1, "distribution": "log_uniform_values"},
             "train.optimizer.name": {"values": ["adam", "sgd"]},
             "train.batch_size": {"values": [16, 32, 64, 128]},
             "train.optimizer.weight_decay": {"values": [0.0, 0.0001, 0.001]}}
    common = [f"train.epochs={epochs}", "train.early_stop.patience=null", "data.val_fraction=0.25",
              "--tracker", "mlflow", "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "random.yaml").write_text(yaml.safe_dump({"method": "random", "metric": {"name": "val_accuracy"},
                                                          "run_cap": budget, "parameters": space}))
        (work / "bayes.yaml").write_text(yaml.safe_dump({"method": "bayes", "metric": {"name": "val_accuracy"},
                                                         "run_cap": budget, "pruner": pruner, "parameters": space}))
        results = {}
        for name in ("random", "bayes"):
            wall, out = trainlab(work, "sweep", f"{name}.yaml", *common)
            trials = [t for t in study_trials(work, sweep_id(out))]
            results[name] = (wall, [(len(t.intermediate_values), max(t.intermediate_values.values())) for t in trials])
    target = max(best for _, best in results["random"][1])
    print(f"\n2. pruning: digits (25% of train held out for validation), {budget} configurations of up to {epochs} "
          "epochs; lr log-uniform 1e-4..0.1, adam/sgd, batch 16..128, weight decay 0..1e-3; MLflow on")
    for name, (wall, trials) in results.items():
        spent, reached_at = 0, None
        for used, best in trials:
            spent += used
            if reached_at is None and best >= target:
                reached_at = spent
        total = sum(used for used, _ in trials)
        label = name if name == "random" else f"bayes + {pruner} pruning"
        reached = f"reached {target:.4f} after {reached_at} epochs" if reached_at else f"did not reach {target:.4f}"
        print(f"  {label:<24} {total:>4} epochs in all ({wall:.0f} s); {reached}; best "
              f"{max(b for _, b in trials):.4f}; pruned {sum(u < epochs for u, _ in trials)} of {len(trials)}")
    print(f"  (random spends its whole budget, {budget * epochs} epochs, to know its best)")


def workers(trials: int, epochs: int) -> None:
    grid = {"method": "grid", "metric": {"name": "val_accuracy"},
            "parameters": {"train.optimizer.lr": {"values": [0.001 * (i + 1) for i in range(trials)]}}}
    print(f"\n3. workers: a {trials}-configuration grid on digits, {epochs} epochs, MLflow on, {os.cpu_count()} cores")
    timings = {}
    for n in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "g.yaml").write_text(yaml.safe_dump(grid))
            timings[n], _ = trainlab(work, "sweep", "g.yaml", f"train.epochs={epochs}", "train.early_stop.patience=null",
                                     "--tracker", "mlflow", "--workers", str(n), "--quiet")
        print(f"  --workers {n}: {timings[n]:.1f} s")
    print(f"  speed-up {timings[1] / timings[2]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="overhead,pruning,workers")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--baseline", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--budget", type=int, default=30, help="configurations in the pruning part")
    parser.add_argument("--prune-epochs", type=int, default=10, help="epochs per configuration in the pruning part")
    parser.add_argument("--pruner", default="asha", help="median, asha, or none")
    parser.add_argument("--worker-trials", type=int, default=16, help="configurations in the workers part")
    parser.add_argument("--worker-epochs", type=int, default=15, help="epochs per configuration in the workers part")
    args = parser.parse_args()
    import torch

    print(f"{time.strftime('%Y-%m-%d %H:%M')} · CPU capability {torch.backends.cpu.get_cpu_capability()} · "
          f"{os.cpu_count()} cores · torch {torch.__version__}")
    parts = args.parts.split(",")
    if "overhead" in parts:
        overhead(args.trials, args.baseline, args.epochs)
    if "pruning" in parts:
        pruning(args.prune_epochs, args.budget, args.pruner)
    if "workers" in parts:
        workers(args.worker_trials, args.worker_epochs)


if __name__ == "__main__":
    run_main("sweep", main)
