"""Which process is recording a run, and whether it is still alive.

A run records its host, pid and the pid's start time. A run still marked running
whose process is gone (``kill -9``, a crash, a reboot) was killed: ``trainlab
runs`` shows it so, and ``--resume`` may complete it. The start time guards
against a recycled pid.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping

HOST_TAG, PID_TAG, STARTED_TAG = "trainlab.host", "trainlab.pid", "trainlab.process_started"


def this_process() -> dict[str, str]:
    import psutil

    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
            STARTED_TAG: f"{psutil.Process().create_time():.2f}"}


def process_alive(record: Mapping[str, str]) -> bool | None:
    """True / False for a process recorded on this host; None when it ran elsewhere or was not recorded."""
    import psutil

    if record.get(HOST_TAG) != socket.gethostname() or not record.get(PID_TAG):
        return None
    try:
        process = psutil.Process(int(record[PID_TAG]))
        return abs(process.create_time() - float(record.get(STARTED_TAG) or 0)) < 1.0
    except psutil.AccessDenied:
        return True  # it exists; another user's
    except (psutil.NoSuchProcess, ValueError):
        return False
