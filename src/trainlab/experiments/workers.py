"""A sweep's worker processes on one machine: started on the same study, each with its share of the cores,
waited for, and stopped together (Ctrl-C or SIGTERM reaches every one, which marks its trial killed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type only: the CLI imports this module at start
    from trainlab.experiments.study_storage import Sweep

POLL_S = 2.0
STORAGE_ENV = "TRAINLAB_SWEEP_STORAGE"  # --storage, also how a sweep hands it to the workers it starts
STOP_WAIT_S = 15.0  # for a worker to mark its trial killed after SIGINT, before it is killed


def start_workers(the_sweep: Sweep, count: int, threads: int | None) -> list[subprocess.Popen[bytes]]:
    """``count`` more processes running trials of the same study (`trainlab sweep --resume ID --join`)."""
    command = [sys.executable, "-m", "trainlab", "sweep", "--resume", the_sweep.sweep_id, "--join", "--quiet",
               *(["--threads", str(threads)] if threads else [])]
    # the storage URL may hold a password: through the environment, not argv (any user can read /proc/PID/cmdline)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", STORAGE_ENV: the_sweep.storage}
    return [subprocess.Popen([*command, "--worker-index", str(i + 1)], env=env) for i in range(count)]


def wait_for_workers(procs: list[subprocess.Popen[bytes]], on_poll: Callable[[], None],
                     warn: Callable[[str], None]) -> None:
    """Until every worker has ended (``on_poll`` every POLL_S); a Ctrl-C here stops them all."""
    try:
        while any(p.poll() is None for p in procs):
            on_poll()
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        stop_workers(procs)
        raise
    failed = [p.returncode for p in procs if p.returncode not in (0, None)]
    if failed:
        warn(f"{len(failed)} of {len(procs) + 1} workers ended with exit code {failed[0]}; their trials are "
             "marked in the ranking, and running the same command again continues the sweep")


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT to every worker still running: each marks its trial killed, and the same command re-runs it."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            p.kill()
