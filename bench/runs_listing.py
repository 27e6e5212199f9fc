"""How long `trainlab runs` takes to list a store of N runs (the target: 100 local runs in at most 3 s).

The runs are made through MlflowClient with the shape of a real trainlab run
(the ~45 params of a resolved config, 9 per-epoch metrics over 15 epochs, the
test metrics, the tags), so the figure is what a user's store gives without
training 100 models first. Each figure is the median of fresh `trainlab runs`
processes (the real console script, imports included).

    python bench/runs_listing.py [--runs 100] [--repeats 5] [--save]

With --save the output also goes to bench/results/runs_listing.txt, which docs/speed.md includes.
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

from common import results_file

TRAINLAB = str(Path(sys.executable).with_name("trainlab"))
EPOCH_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1", "val_auroc", "lr",
              "epoch_seconds", "images_per_second")
TEST_KEYS = ("test_accuracy", "test_macro_f1", "test_auroc", "test_log_loss", "test_macro_precision",
             "test_macro_recall", "test_images_per_second", "best_epoch", "epochs_run")


def make_store(folder: Path, runs: int) -> None:
    """``runs`` finished runs in ``folder``/mlruns, recorded the way trainlab records them."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from mlflow.entities import Metric, Param, RunTag

    from trainlab.config import flatten_config, load_config
    from trainlab.tracking.mlflow_store import RUN_ID_TAG, client_for, experiment_id, resolve_tracking_uri

    os.chdir(folder)
    uri = resolve_tracking_uri()
    client = client_for(uri)
    exp = experiment_id(client, "bench", uri)
    params = flatten_config(load_config(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"))
    for i in range(runs):
        run = client.create_run(exp, run_name=f"run-{i}", tags={RUN_ID_TAG: f"run-{i:03d}"})
        now = int(time.time() * 1000)
        metrics = [Metric(k, 0.5 + 0.01 * e, now, e) for e in range(1, 16) for k in EPOCH_KEYS]
        metrics += [Metric(k, 0.9, now, 0) for k in TEST_KEYS]
        client.log_batch(run.info.run_id, metrics=metrics,
                         params=[Param(k, v) for k, v in {**params, "model": "small", "dataset": "digits"}.items()],
                         tags=[RunTag(k, v) for k, v in {"dataset": "digits", "model": "small", "seed": str(i)}.items()])
        client.set_terminated(run.info.run_id, "FINISHED")


def time_listing(folder: Path, repeats: int, args: list[str]) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([TRAINLAB, "runs", *args], cwd=folder, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--save", action="store_true", help="also write bench/results/runs_listing.txt (the docs include it)")
    args = parser.parse_args()
    with results_file("runs_listing", args.save), tempfile.TemporaryDirectory(prefix="trainlab-bench-runs-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        make_store(folder, args.runs)
        print(f"store of {args.runs} runs made in {time.perf_counter() - started:.1f} s")
        # a plain listing reads the local store's tables (runs.list_local_runs); a sort goes through MLflow's
        # public client (MlflowClient.search_runs), as every listing of a server does
        for label, extra in (("trainlab runs", []), ("trainlab runs --json", ["--json"]),
                             ("trainlab runs --group model", ["--group", "model"]),
                             ("trainlab runs --sort test_accuracy", ["--sort", "test_accuracy"])):
            print(f"{label:<32} {time_listing(folder, args.repeats, extra):6.2f} s  (median of {args.repeats})")
        started = time.perf_counter()
        subprocess.run([TRAINLAB, "--help"], check=True, capture_output=True)
        print(f"{'trainlab --help':<32} {time.perf_counter() - started:6.2f} s  (the floor: Python + trainlab's CLI)")


if __name__ == "__main__":
    main()
