"""What recording costs a short run: a 1-epoch quickstart with MLflow + W&B offline, the report page and the
MLflow model, against the same run with `--tracker none`, each a fresh process as a user runs it.

The settings are interleaved round by round (recorded, untracked, MLflow only, W&B only) so a slow minute of the
shared VM hits all; each figure is the median of the per-round differences. Each setting runs in its own folder,
after one warm-up run (the MLflow store created, the OS file cache warm), as on a user's second run of the day.

    python bench/recording_overhead.py [--rounds 3]
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

from common import print_cpu_line, run_main

REPO = Path(__file__).resolve().parents[1]
TRAINLAB = str(Path(sys.executable).with_name("trainlab"))
COMMAND = [TRAINLAB, "train", "-c", str(REPO / "configs" / "quickstart.yaml"), "train.epochs=1", "--quiet"]


def wall(work: Path, *extra: str) -> float:
    """Seconds from launch to exit of one `trainlab train` (the prompt back in a terminal)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_"))}
    started = time.perf_counter()
    subprocess.run([*COMMAND, *extra], cwd=work, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


SETTINGS = {"recorded": (), "--tracker none": ("--tracker", "none"), "MLflow only": ("--tracker", "mlflow"),
            "W&B only": ("--tracker", "wandb")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_cpu_line()
    with tempfile.TemporaryDirectory() as tmp:
        folders = {name: Path(tmp) / f"s{i}" for i, name in enumerate(SETTINGS)}
        for name, extra in SETTINGS.items():  # warm-up: stores created, files cached
            folders[name].mkdir()
            wall(folders[name], *extra)
        rows = [{name: wall(folders[name], *extra) for name, extra in SETTINGS.items()} for _ in range(args.rounds)]
    print("1-epoch quickstart (digits, small CNN), launch to exit; recorded = MLflow (SQLite) + W&B offline + "
          "report page + MLflow model; every setting writes the run folder and the report page")
    for i, row in enumerate(rows, 1):
        print(f"  round {i}: " + ", ".join(f"{name} {seconds:5.2f} s" for name, seconds in row.items()))
    base = "--tracker none"
    for name in SETTINGS:
        if name != base:
            added = statistics.median(row[name] - row[base] for row in rows)
            print(f"median: {name} adds {added:+.2f} s to --tracker none "
                  f"({statistics.median(row[base] for row in rows):.2f} s)")


if __name__ == "__main__":
    run_main("recording_overhead", main)
