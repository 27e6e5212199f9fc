"""What the logged MLflow model adds to a run: seconds and bytes, against the checkpoint it wraps.

Trains the default digits run and a Fashion-MNIST run (fashion_fast, 1 epoch) without trackers, then logs
each best checkpoint as an MLflow pyfunc model into a fresh local store, 3 times, and prints the median
time and the model directory's size beside the checkpoint's. Prints the CPU.

    python bench/mlflow_model.py [--skip-fashion]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import run_main, start

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    args = start(__doc__)
    from mlflow import MlflowClient

    from trainlab.config import load_config
    from trainlab.experiment import run_experiment
    from trainlab.tracking.mlflow_pyfunc import log_pyfunc
    from trainlab.tracking.mlflow_store import ensure_local_store

    os.chdir(tempfile.mkdtemp(prefix="trainlab-bench-model-"))
    uri = f"sqlite:///{Path('mlruns/mlflow.db').resolve()}"
    Path("mlruns").mkdir()
    ensure_local_store(uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment("bench")
    runs = [("digits quickstart", REPO / "configs" / "quickstart.yaml", [])]
    if not args.skip_fashion:
        runs.append(("Fashion-MNIST fashion_fast", REPO / "configs" / "fashion_fast.yaml", ["train.epochs=1"]))
    for name, config, overrides in runs:
        out = run_experiment(load_config(config, [*overrides, "tracking.trackers=[]", "report=false"]))
        checkpoint = out.result.best_checkpoint
        from trainlab.data import load_data

        _, splits = load_data(out.config.data)
        seconds = []
        for _ in range(3):
            run_id = client.create_run(experiment).info.run_id
            started = time.perf_counter()
            log_pyfunc(client, run_id, checkpoint, list(out.dataset.class_names), tuple(out.dataset.input_shape),
                       splits.test_x[:2])
            seconds.append(time.perf_counter() - started)
        folder = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://")) / "model"
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        print(f"{name}: logging the MLflow model takes {statistics.median(seconds):.2f} s (median of 3; first "
              f"{seconds[0]:.2f} s); model directory {size / 1024:,.0f} KB, of which the checkpoint "
              f"{checkpoint.stat().st_size / 1024:,.0f} KB (the rest: {(size - checkpoint.stat().st_size) / 1024:,.0f} KB)")


if __name__ == "__main__":
    run_main("mlflow_model", main)
    sys.exit(0)
