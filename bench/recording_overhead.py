"""What recording costs a short run: a 1-epoch quickstart with MLflow + W&B offline, the report page and the
MLflow model, against the same run with `--tracker none`, each a fresh process as a user runs it.

Pairs are interleaved (recorded, untracked, recorded, ...) so a slow minute of the shared VM hits both; the
figure is the median of the per-pair differences. Both sides of a pair run in their own folder, after one
warm-up run of each (the MLflow store created, the OS file cache warm), as on a user's second run of the day.

    python bench/recording_overhead.py [--pairs 3]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    print_cpu_line()
    with tempfile.TemporaryDirectory() as tmp:
        recorded_dir, untracked_dir = Path(tmp) / "recorded", Path(tmp) / "untracked"
        recorded_dir.mkdir()
        untracked_dir.mkdir()
        wall(recorded_dir)
        wall(untracked_dir, "--tracker", "none")
        rows = []
        for _ in range(args.pairs):
            rows.append((wall(recorded_dir), wall(untracked_dir, "--tracker", "none")))
    print("1-epoch quickstart (digits, small CNN), launch to exit; recorded = MLflow (SQLite) + W&B offline + "
          "report page + MLflow model")
    for i, (recorded, untracked) in enumerate(rows, 1):
        print(f"  pair {i}: recorded {recorded:5.2f} s, --tracker none {untracked:5.2f} s, "
              f"recording adds {recorded - untracked:+5.2f} s")
    added = statistics.median(r - u for r, u in rows)
    print(f"median: recorded {statistics.median(r for r, _ in rows):.2f} s, untracked "
          f"{statistics.median(u for _, u in rows):.2f} s; recording adds {added:+.2f} s")


if __name__ == "__main__":
    run_main("recording_overhead", main)
