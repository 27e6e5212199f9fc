"""What a report page costs, and how big it is.

1. the default digits run (configs/quickstart.yaml): what the page adds to `trainlab train`
   (in-process, the same run with `report: true` and `report: false`, 3 seeds each, MLflow
   recording), and `trainlab report RUN` from the record (the CLI, end to end, and the page alone
   once the store is open);
2. a Fashion-MNIST run (configs/fashion_fast.yaml, 1 epoch; 10,000 test images): the page's size;
3. a 50-trial sweep on digits (random search, 1 epoch a trial): the sweep page's size and time, the
   first time (with the trial pages it links to) and again.

Prints the CPU it ran on.

    python bench/report.py [--skip-fashion] [--trials 50]
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
ENV = {**os.environ, "WANDB_MODE": "disabled"}


def trainlab(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([TRAINLAB, *args], capture_output=True, text=True, env=ENV)
    if done.returncode != 0:
        raise SystemExit(f"`trainlab {' '.join(args)}` failed: {done.stderr.strip()[-400:]}")
    return time.perf_counter() - started, done.stdout


def digits_run() -> str:
    from trainlab.config import load_config
    from trainlab.experiment import run_experiment

    seconds: dict[bool, list[float]] = {True: [], False: []}
    run_id = ""
    run_experiment(load_config(REPO / "configs" / "quickstart.yaml", ["seed=9", "tracking.trackers=[mlflow]"]))  # warm-up
    for seed in (0, 1, 2):
        for report in (False, True):
            cfg = load_config(REPO / "configs" / "quickstart.yaml",
                              [f"seed={seed}", f"report={str(report).lower()}", "tracking.trackers=[mlflow]"])
            started = time.perf_counter()
            out = run_experiment(cfg)
            seconds[report].append(time.perf_counter() - started)
            run_id = out.run_id if report else run_id
    added = [with_page - without for with_page, without in zip(seconds[True], seconds[False])]
    page = Path("runs") / run_id / "report.html"
    print(f"1. digits quickstart run: `trainlab train` {statistics.median(seconds[False]):.2f} s without the page, "
          f"{statistics.median(seconds[True]):.2f} s with it (median of 3; the page adds "
          f"{statistics.median(added):.2f} s, range {min(added):.2f}-{max(added):.2f}); page {page.stat().st_size / 1024:,.0f} KB")
    wall, _ = trainlab("report", run_id, "--out", "again.html")
    from trainlab.experiments.report import report_for
    from trainlab.runs import Record

    record = Record()
    report_for(record, run_id, Path("warm.html"), log=False)  # imports and the dataset's first load
    started = time.perf_counter()
    report_for(record, run_id, Path("warm.html"), log=False)
    print(f"   `trainlab report RUN` from the record: {wall:.1f} s end to end (a new process importing MLflow and "
          f"torch); {time.perf_counter() - started:.2f} s for the page alone with the store open")
    return run_id


def fashion_run() -> None:
    wall, out = trainlab("train", "-c", str(REPO / "configs" / "fashion_fast.yaml"), "train.epochs=1", "-t", "mlflow",
                         "-q")
    page = next(Path(line.split("report page: ")[1].split(" (")[0]) for line in out.splitlines()
                if "report page: " in line)
    print(f"2. Fashion-MNIST run (1 epoch, 10,000 test images): page {page.stat().st_size / 1024:,.0f} KB "
          f"(the run took {wall:.0f} s)")


def sweep_page(trials: int) -> None:
    from trainlab.experiments.report import TRIAL_PAGES

    spec = Path("bench-sweep.yaml")
    spec.write_text(f"method: random\nrun_cap: {trials}\nmetric: {{name: val_accuracy, goal: maximize}}\n"
                    "parameters:\n  train.optimizer.lr: {min: 0.0003, max: 0.03, distribution: log_uniform_values}\n"
                    "  train.batch_size: {values: [16, 32, 64]}\n  model.arch: {values: [small, fast]}\n")
    wall, out = trainlab("sweep", str(spec), "-c", str(REPO / "configs" / "quickstart.yaml"), "train.epochs=1",
                         "-t", "mlflow", "-q")
    sweep = next(w for w in out.split() if w.startswith("sweep-")).rstrip(":")
    made, printed = trainlab("report", sweep)  # the sweep's page and, the first time, a page per trial it links to
    again, _ = trainlab("report", sweep)  # the trial pages are there: only the sweep's page is drawn
    size = (Path("runs") / sweep / "report.html").stat().st_size
    print(f"3. {trials}-trial sweep page: {size / 1024:,.0f} KB, `trainlab report SWEEP` {made:.1f} s end to end "
          f"the first time (it writes the pages of the best {TRIAL_PAGES} configurations' runs), {again:.1f} s again "
          f"(the sweep took {wall:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-fashion", action="store_true")
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    print_cpu_line()
    os.chdir(tempfile.mkdtemp(prefix="trainlab-bench-report-"))
    os.environ["WANDB_MODE"] = "disabled"
    digits_run()
    if not args.skip_fashion:
        fashion_run()
    sweep_page(args.trials)


if __name__ == "__main__":
    run_main("report", main)
