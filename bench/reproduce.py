"""Do recorded runs reproduce identical, and what does reproducing cost beyond the training?

In a fresh git repository holding trainlab's source (as a team's checkout does), one run of each
kind is trained and recorded, then `trainlab reproduce` rebuilds its code in a temporary worktree,
trains it again and compares: digits (the quickstart), Fashion-MNIST (fashion_fast, 1 epoch), an
image folder (generated RGB images), a declared architecture (custom layers), a run killed mid-epoch
and resumed, a sweep's trial, and a run made from a working tree with an uncommitted change.
Prints each verdict, the original command's wall time, the run's training loop (as recorded), the
reproduction's wall time, and the CPU.

    python bench/reproduce.py [--skip-fashion]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import run_main, start

REPO = Path(__file__).resolve().parents[1]
MAIN = "import sys; from trainlab.cli import main; sys.argv[0] = 'trainlab'; main()"


def run(project: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(project / "src"), "WANDB_MODE": "disabled", **(env or {})}
    done = subprocess.run([sys.executable, "-c", MAIN, *args], cwd=project, env=full, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"`trainlab {' '.join(args)}` failed: {done.stderr.strip()[-400:]}")
    return done


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=bench@example.org", "-c", "user.name=bench", *args], cwd=project,
                   check=True, capture_output=True)


def newest(project: Path) -> str:
    return max((p for p in (project / "runs").iterdir() if (p / "run.json").is_file()),
               key=lambda p: p.stat().st_mtime).name


def image_folder(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 12)):
        for name, colour in (("red", (200, 30, 30)), ("green", (30, 200, 30)), ("blue", (30, 30, 200))):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 80, (20, 20, 3)) + np.array(colour) * rng.uniform(0.4, 1.0)
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")


def main() -> None:
    args = start(__doc__)
    project = Path(tempfile.mkdtemp(prefix="trainlab-bench-reproduce-")) / "project"
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "configs", project / "configs")
    shutil.copy(REPO / ".gitignore", project / ".gitignore")
    image_folder(project / "images")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "bench")

    quick = ["-c", "configs/quickstart.yaml", "-t", "mlflow", "-q"]
    kinds: list[tuple[str, list[str]]] = [
        ("digits (quickstart)", ["train", *quick]),
        ("image folder (RGB)", ["train", *quick, "data.name=imagefolder", "data.path=images", "train.epochs=5"]),
        ("declared architecture", ["train", *quick, "model.arch=custom", "model.layers=[{type: conv, out: 8, kernel: 3}, "
                                   "{type: relu}, {type: flatten}, {type: linear, out: 32}, {type: relu}]"]),
    ]
    if not args.skip_fashion:
        kinds.append(("Fashion-MNIST (1 epoch)", ["train", "-c", "configs/fashion_fast.yaml", "train.epochs=1",
                                                  "-t", "mlflow", "-q"]))
    rows = []

    def timed(*command: str, env: dict[str, str] | None = None, check: bool = True) -> tuple[float, int]:
        started = time.perf_counter()
        done = run(project, *command, env=env, check=check)
        return time.perf_counter() - started, done.returncode

    for name, command in kinds:
        rows.append((name, timed(*command)[0], newest(project)))
    first, code = timed("train", *quick, "seed=3", env={"TRAINLAB_FAILPOINT": "mid-epoch"}, check=False)
    resumed_id = newest(project)
    rows.append((f"killed (exit {code}) and resumed", first + timed("train", "--resume", resumed_id, "-q")[0],
                 resumed_id))
    spec = project / "one.yaml"
    spec.write_text("method: grid\nmetric: {name: val_accuracy, goal: maximize}\n"
                    "parameters:\n  train.optimizer.lr: {values: [0.002]}\n")
    wall = timed("sweep", str(spec), "-c", "configs/quickstart.yaml", "-t", "mlflow", "-q")[0]
    rows.append(("a sweep's trial", wall, next(p.name for p in (project / "runs").iterdir() if "-t000" in p.name)))
    models = project / "src" / "trainlab" / "models.py"
    committed = models.read_text()
    models.write_text(committed.replace("_conv_block(16)", "_conv_block(12)", 1))
    rows.append(("uncommitted change", timed("train", *quick, "seed=4")[0], newest(project)))
    models.write_text(committed)

    print(f"{'run':32} {'verdict':18} {'command s':>10} {'loop s':>7} {'reproduce s':>12}")
    for name, original, run_id in rows:
        started = time.perf_counter()
        done = run(project, "reproduce", run_id, "--json", "--no-record", check=False)
        wall = time.perf_counter() - started
        found = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        loop = found.get("recorded_seconds") or float("nan")
        verdict = found.get("verdict", f"exit {done.returncode}: {done.stderr.strip()[-80:]}")
        print(f"{name:32} {verdict:18} {original:10.1f} {loop:7.1f} {wall:12.1f}")


if __name__ == "__main__":
    run_main("reproduce", main)
