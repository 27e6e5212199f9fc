"""kill -9 of a whole `--workers 2` sweep, again and again, then the same command: is every configuration trained
exactly once, and does nothing hang?

Each round is a fresh folder: a 6-configuration grid on digits (2 epochs a trial, MLflow recording) started in
its own process group, killed with `kill -9 -- -PGID` at random moments (--kills times: during start-up, a
trial, a record's end), then the same command run to the end. Checked per round, from the run folders and
from MLflow: one finished run per configuration, no run id used twice, no traceback, the last command's time.

Prints the CPU it ran on, a line per round, and the totals.

    python bench/sweep_kills.py [--rounds 20] [--kills 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml
from common import print_cpu_line, run_main

TRAINLAB = str(Path(sys.executable).with_name("trainlab"))
RATES = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]
GRID = {"method": "grid", "metric": {"name": "val_accuracy"}, "parameters": {"train.optimizer.lr": {"values": RATES}}}
COMMAND = [TRAINLAB, "sweep", "grid.yaml", "data.name=digits", "train.epochs=2", "train.early_stop.patience=null",
           "--tracker", "mlflow", "--workers", "2", "-q"]
FINAL_TIMEOUT_S = 600


def one_round(folder: Path, kills: int, rng: random.Random) -> dict[str, object]:
    (folder / "grid.yaml").write_text(yaml.safe_dump(GRID), encoding="utf-8")
    env = {**os.environ, "WANDB_MODE": "disabled"}
    moments = []
    for _ in range(kills):
        group = subprocess.Popen(COMMAND, cwd=folder, env=env, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        moment = rng.uniform(1.5, 12.0)
        try:
            group.wait(moment)
            moments.append(f"ended before {moment:.1f}s")
        except subprocess.TimeoutExpired:
            os.killpg(group.pid, signal.SIGKILL)
            group.wait()
            moments.append(f"{moment:.1f}s")
    started = time.perf_counter()
    try:
        final = subprocess.run(COMMAND, cwd=folder, env=env, capture_output=True, text=True, timeout=FINAL_TIMEOUT_S)
        hung, code, stderr = False, final.returncode, final.stderr
    except subprocess.TimeoutExpired:
        hung, code, stderr = True, None, ""
    seconds = time.perf_counter() - started
    records = [json.loads(p.read_text()) for p in (folder / "runs").glob("sweep-*-t*/run.json")]
    finished = Counter(json.loads(r["tags"]["sweep_params"])["train.optimizer.lr"] for r in records
                       if r["status"] == "finished")
    in_mlflow = mlflow_finished(folder)
    once = finished == Counter(RATES) and in_mlflow == Counter(RATES)
    return {"kills": moments, "seconds": seconds, "hung": hung, "exit": code, "once": once,
            "traceback": "Traceback" in stderr, "attempts": len(records), "folders": dict(finished),
            "mlflow": dict(in_mlflow), "warnings": [line[:160] for line in stderr.splitlines()]}


def mlflow_finished(folder: Path) -> Counter:
    from mlflow import MlflowClient

    store = folder / "mlruns" / "mlflow.db"
    if not store.exists():
        return Counter()
    client = MlflowClient(f"sqlite:///{store}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.job = 'trial'",
                              max_results=1000)
    return Counter(float(r.data.params["train.optimizer.lr"]) for r in runs if r.info.status == "FINISHED")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print_cpu_line()
    print(f"{args.rounds} rounds x {args.kills} kill -9 of the process group of `{' '.join(COMMAND[1:])}` "
          f"({len(RATES)} configurations), then the same command")
    results = []
    for number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="sweep-kills-") as tmp:
            result = one_round(Path(tmp), args.kills, rng)
        results.append(result)
        verdict = "ok" if result["once"] and not result["hung"] and result["exit"] == 0 and not result["traceback"] \
            else "FAULT"
        print(f"round {number:2d}: killed at {', '.join(result['kills'])}; same command {result['seconds']:.0f} s, "
              f"exit {result['exit']}; {result['attempts']} trial runs for {len(RATES)} configurations; {verdict}"
              + ("" if verdict == "ok" else f" folders {result['folders']} mlflow {result['mlflow']} "
                 f"{result['warnings'][-3:]}"), flush=True)
    faults = sum(not (r["once"] and not r["hung"] and r["exit"] == 0 and not r["traceback"]) for r in results)
    kills = sum(sum(not k.startswith("ended") for k in r["kills"]) for r in results)  # type: ignore[attr-defined]
    times = sorted(float(r["seconds"]) for r in results)  # type: ignore[arg-type]
    print(f"{len(results)} rounds, {kills} kill -9 of the whole process group: {len(results) - faults} rounds trained "
          f"every configuration exactly once (run folders and MLflow), {sum(bool(r['hung']) for r in results)} hung, "
          f"{sum(bool(r['traceback']) for r in results)} printed a traceback; the same command then took "
          f"{times[len(times) // 2]:.0f} s (median), {times[-1]:.0f} s (max)")


if __name__ == "__main__":
    run_main("sweep_kills", main)
