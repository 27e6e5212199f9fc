"""Start-up latency: `trainlab --help`, and `trainlab train` from launch to the first training step.

The second figure is what every run records as `seconds_to_first_step` in its
summary (from the process's start time to the first optimizer step), read here
from runs of the real console script.

    python bench/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import run_main

TRAINLAB = str(Path(sys.executable).with_name("trainlab"))
CASES = {
    "digits, trackers off": ["tracking.trackers=[]"],
    "digits, MLflow + W&B offline": [],
    "fashion-mnist, trackers off": ["data.name=fashion-mnist", "tracking.trackers=[]"],
    "fashion-mnist, MLflow + W&B offline": ["data.name=fashion-mnist"],
}


def help_seconds(repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([TRAINLAB, "--help"], check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def first_step_seconds(overrides: list[str], workdir: Path) -> float:
    subprocess.run([TRAINLAB, "train", "train.epochs=1", "threads=2", "--quiet", *overrides], check=True,
                   capture_output=True, cwd=workdir, env={**os.environ, "WANDB_MODE": "offline"})
    (summary,) = workdir.glob("runs/*/summary.json")
    seconds = json.loads(summary.read_text())["seconds_to_first_step"]
    summary.parent.rename(workdir / f"done-{time.time_ns()}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} · python {sys.version.split()[0]} · median of {args.repeats}")
    print(f"{'trainlab --help':<42} {help_seconds(args.repeats * 2):>6.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        first_step_seconds(["tracking.trackers=[mlflow]"], work)  # the MLflow store exists from here on
        for name, overrides in CASES.items():
            samples = [first_step_seconds(overrides, work) for _ in range(args.repeats)]
            print(f"{'train to first step: ' + name:<42} {statistics.median(samples):>6.2f} s")


if __name__ == "__main__":
    run_main("startup", main)
