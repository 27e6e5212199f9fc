"""What a dead or silent MLflow tracking server costs a training run, and how fast Ctrl-C returns.

For each server (the local store for comparison; a refused port; a server that
accepts connections and never answers) it runs `trainlab train` on digits with
MLflow as the only tracker and prints: the whole run's wall time, the time from
the last epoch's line to the process exit (the end-of-run wait), and the exit
code. Then it presses Ctrl-C in a run whose server is silent and times the
return to the prompt. Every figure is from the real console script.

    python bench/dead_server.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import run_main

TRAINLAB = str(Path(sys.executable).with_name("trainlab"))


def silent_server() -> str:
    """A port that accepts connections and never answers (a hung server behind a load balancer)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held = []
    threading.Thread(target=lambda: [held.append(listener.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


def refused_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def timed_run(folder: Path, uri: str | None, epochs: int) -> tuple[float, float, int]:
    """(wall seconds, seconds from the last epoch line to exit, exit code)."""
    env = {**os.environ, **({"MLFLOW_TRACKING_URI": uri} if uri else {})}
    env.pop("MLFLOW_TRACKING_URI", None) if uri is None else None
    started = time.monotonic()
    proc = subprocess.Popen([TRAINLAB, "train", f"train.epochs={epochs}", "threads=2", "--tracker", "mlflow"],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    last_epoch = started
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(f"epoch {epochs}/{epochs}"):
            last_epoch = time.monotonic()
    proc.wait()
    ended = time.monotonic()
    return ended - started, ended - last_epoch, proc.returncode


def ctrl_c_seconds(folder: Path, uri: str) -> float:
    proc = subprocess.Popen([TRAINLAB, "train", "train.epochs=500", "threads=2", "--tracker", "mlflow", "--quiet"],
                            cwd=folder, env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not list((folder / "runs").glob("*/checkpoints/last.pt")):
        time.sleep(0.05)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    silent = silent_server()
    print(f"{'MLflow server':<34} {'wall s':>7} {'after last epoch s':>19} {'exit':>5}")
    for label, uri in (("local store (for comparison)", None), ("refused port", refused_port()),
                       ("accepts, never answers", silent)):
        with tempfile.TemporaryDirectory(prefix="trainlab-bench-dead-") as tmp:
            wall, tail, code = timed_run(Path(tmp), uri, args.epochs)
        print(f"{label:<34} {wall:7.1f} {tail:19.1f} {code:5d}")
    with tempfile.TemporaryDirectory(prefix="trainlab-bench-dead-") as tmp:
        print(f"Ctrl-C with a silent server: back at the prompt in {ctrl_c_seconds(Path(tmp), silent):.1f} s")


if __name__ == "__main__":
    run_main("dead_server", main)
