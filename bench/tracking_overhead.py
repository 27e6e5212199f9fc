"""What tracking costs: per call, per run, and before the first training step.

Prints, in one run:
1. the cost of one `log_metrics` call of 4 scalars: trainlab's Run (buffered, real
   backends attached) vs direct MLflow (SQLite) and direct wandb (offline) calls;
2. the wall time of the same training (Fashion-MNIST, `small` CNN) with trackers
   off, MLflow only, W&B offline only, and both, as ratios to the untracked one
   (each a fresh process, as a user runs it);
3. the time from process start to the first training step, per setting.

Wall times on a shared 2-core VM vary by 10-20% from run to run, so the
CPU seconds of each process (with the wandb-core process it starts) are
printed too: they measure what tracking costs with far less noise.

    python bench/tracking_overhead.py [--epochs 3] [--repeats 1] [--settings off,both] [--data-dir data]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import run_main

SETTINGS = {"off": "[]", "mlflow": "[mlflow]", "wandb": "[wandb]", "both": "[mlflow, wandb]"}
VALUES = {"loss": 0.5, "accuracy": 0.9, "f1": 0.88, "lr": 0.001}


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def per_call_costs(workdir: Path) -> dict[str, float]:
    """Median seconds of one call logging 4 scalars, for each way of logging."""
    os.chdir(workdir)
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    from trainlab.tracking import FolderTracker, MlflowTracker, Run, RunInfo, WandbTracker

    results = {}
    run = Run(RunInfo("bench-run", workdir / "runs" / "bench-run", "bench"),
              [FolderTracker(), MlflowTracker(), WandbTracker(mode="offline")])
    with run:
        samples = []
        for step in range(20_000):
            started = time.perf_counter()
            run.log_metrics(VALUES, step)
            samples.append(time.perf_counter() - started)
            if step % 1000 == 999:
                run.flush()
        results["trainlab Run.log_metrics (buffered)"] = _median_us(samples)

    import mlflow
    import wandb
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(f"sqlite:///{workdir / 'direct.db'}")
    run_id = client.create_run(client.create_experiment("direct")).info.run_id
    samples = []
    for step in range(100):
        started = time.perf_counter()
        for key, value in VALUES.items():
            client.log_metric(run_id, key, value, step=step)
        samples.append(time.perf_counter() - started)
    results["MLflow client.log_metric x4 (SQLite)"] = _median_us(samples)
    samples = []
    for step in range(200):
        now = int(time.time() * 1000)
        started = time.perf_counter()
        client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in VALUES.items()])
        samples.append(time.perf_counter() - started)
    results["MLflow client.log_batch (SQLite)"] = _median_us(samples)
    client.set_terminated(run_id)

    wb = wandb.init(project="bench", mode="offline", dir=str(workdir), settings=wandb.Settings(silent=True, console="off"))
    samples = []
    for step in range(2000):
        started = time.perf_counter()
        wb.log(VALUES, step=step)
        samples.append(time.perf_counter() - started)
    wb.finish()
    results["wandb run.log (offline)"] = _median_us(samples)
    del mlflow
    return results


def child(setting: str, epochs: int, data_dir: str) -> None:
    """One training run in this process; prints timings as JSON."""
    started = time.perf_counter()
    from trainlab.config import load_config
    from trainlab.experiment import run_experiment
    from trainlab.train import TrainCallbacks

    marks: dict[str, float] = {}

    class FirstStep(TrainCallbacks):
        def on_step(self, epoch: int, step: int, loss: float, images: int) -> None:
            marks.setdefault("first_step", time.perf_counter() - started)

        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            marks["train_seconds"] = marks.get("train_seconds", 0.0) + metrics["epoch_seconds"]
            marks[f"epoch{epoch}"] = metrics["epoch_seconds"]
            marks["last_epoch_end"] = time.perf_counter() - started

    cfg = load_config(None, ["data.name=fashion-mnist", f"data.data_dir={data_dir}", "model.arch=small",
                             f"train.epochs={epochs}", "train.batch_size=128", "threads=2",
                             f"tracking.trackers={SETTINGS[setting]}"])
    out = run_experiment(cfg, callbacks=FirstStep())
    marks["total"] = time.perf_counter() - started
    marks["after_training"] = marks["total"] - marks["last_epoch_end"]  # test split, record, finish
    marks["failures"] = len(out.tracking_failures)
    print(json.dumps(marks))


def create_store(workdir: Path) -> None:
    """An MLflow store that already exists, as it does from a user's second run on."""
    (workdir / "mlruns").mkdir()
    subprocess.run([sys.executable, "-c", "from mlflow import MlflowClient; import sys; "
                    "MlflowClient(sys.argv[1]).search_experiments()", f"sqlite:///{workdir}/mlruns/mlflow.db"],
                   check=True, capture_output=True)


def run_child(setting: str, epochs: int, data_dir: str, workdir: Path) -> dict[str, float]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    create_store(workdir)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", setting, "--epochs", str(epochs),
                           "--data-dir", data_dir], capture_output=True, text=True, cwd=workdir, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child and what it waited for (wandb-core)
    if done.returncode != 0:
        raise SystemExit(f"{setting} run failed:\n{done.stderr[-2000:]}")
    marks = json.loads(done.stdout.strip().splitlines()[-1])
    marks["wall"] = wall
    marks["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1, help="runs per setting, interleaved; medians reported")
    parser.add_argument("--data-dir", default=str(Path("data").resolve()))
    parser.add_argument("--child", choices=SETTINGS)
    parser.add_argument("--skip-calls", action="store_true")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="which of off,mlflow,wandb,both to run (off is always run: it is the baseline)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.epochs, args.data_dir)
        return

    print(f"# {time.strftime('%Y-%m-%d %H:%M')} · python {sys.version.split()[0]} · {os.cpu_count()} CPUs")
    if not args.skip_calls:
        home = Path.cwd()
        with tempfile.TemporaryDirectory() as tmp:
            costs = per_call_costs(Path(tmp))
            os.chdir(home)
        print("\n## one log_metrics call, 4 scalars (median)")
        for name, us in costs.items():
            print(f"{name:<42} {us:>10.1f} µs")

    print(f"\n## Fashion-MNIST, small CNN, {args.epochs} epochs, 2 threads; each setting a fresh process "
          f"({args.repeats}x, interleaved); the MLflow store exists beforehand (its first use adds ~2 s once)")
    chosen = ["off", *(s for s in SETTINGS if s != "off" and s in args.settings.split(","))]
    results: dict[str, list[dict[str, float]]] = {s: [] for s in chosen}
    for _ in range(args.repeats):
        for setting in chosen:
            with tempfile.TemporaryDirectory() as tmp:
                results[setting].append(run_child(setting, args.epochs, args.data_dir, Path(tmp)))
    med = {s: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for s, runs in results.items()}
    base = med["off"]
    print(f"{'trackers':<8} {'wall s':>7} {'ratio':>6} {'CPU s':>7} {'ratio':>6} {'train s':>8} "
          f"{'1st step s':>11} {'added s':>8} {'after training s':>17}")
    for setting, m in med.items():
        print(f"{setting:<8} {m['wall']:>7.1f} {m['wall'] / base['wall']:>6.3f} {m['cpu']:>7.1f} "
              f"{m['cpu'] / base['cpu']:>6.3f} {m['train_seconds']:>8.1f} {m['first_step']:>11.2f} "
              f"{m['first_step'] - base['first_step']:>+8.2f} {m['after_training']:>17.2f}")


if __name__ == "__main__":
    run_main("tracking_overhead", main)
