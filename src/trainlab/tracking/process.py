"""Which process is recording a run, and whether it is still alive.

A run records its host, pid and the pid's start time. A run still marked running
whose process is gone (``kill -9``, a crash, a reboot) was killed: ``trainlab
runs`` shows it so, and ``--resume`` may complete it. The start time guards
against a recycled pid.

A process in another container (another host name, another pid namespace) cannot
be looked up by pid, but it can by a lock: every recording process holds one on a
file in its working folder for as long as it lives, and the kernel lets go of it
when the process dies, however it dies. Another container on the same machine
(the same boot id) that sees the same file (a shared volume: the same device and
inode) can tell whether the lock is still held.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import IO

HOST_TAG, PID_TAG, STARTED_TAG = "trainlab.host", "trainlab.pid", "trainlab.process_started"
BOOT_TAG, LOCK_TAG, LOCK_ID_TAG = "trainlab.boot_id", "trainlab.alive_lock", "trainlab.alive_lock_id"
ALIVE_DIR = Path(".trainlab") / "processes"  # in the working folder
_alive: dict[int, tuple[dict[str, str], IO[bytes] | None]] = {}  # pid -> its lock's tags, the open lock file


def boot_id() -> str:
    """The running kernel's id: the same in every container on a machine, new at every boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def this_process() -> dict[str, str]:
    import psutil

    started = f"{psutil.Process().create_time():.2f}"
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), STARTED_TAG: started, **_alive_lock(started)}


def _alive_lock(started: str) -> dict[str, str]:
    """Taken at the first call (a forked child takes its own) and held to the end of the process; {} where
    the working folder is not writable."""
    pid = os.getpid()
    if pid not in _alive:
        path = (ALIVE_DIR / f"{socket.gethostname()}-{pid}-{started}.lock").resolve()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "wb")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            _alive[pid] = ({}, None)
            return {}
        stat = os.fstat(handle.fileno())
        _alive[pid] = ({BOOT_TAG: boot_id(), LOCK_TAG: str(path), LOCK_ID_TAG: f"{stat.st_dev}:{stat.st_ino}"}, handle)
        atexit.register(_let_go, path, pid)
    return _alive[pid][0]


def _let_go(path: Path, pid: int) -> None:
    if os.getpid() == pid:  # not in a forked child
        path.unlink(missing_ok=True)


def process_alive(record: Mapping[str, str]) -> bool | None:
    """True / False for a process recorded on this machine (this host, or another container on it sharing the
    working folder); None when it ran elsewhere or was not recorded."""
    import psutil

    held = lock_held(record)
    if held is not None:
        return held
    if record.get(HOST_TAG) != socket.gethostname() or not record.get(PID_TAG):
        return None
    try:
        process = psutil.Process(int(record[PID_TAG]))
        return abs(process.create_time() - float(record.get(STARTED_TAG) or 0)) < 1.0
    except psutil.AccessDenied:
        return True  # it exists; another user's
    except (psutil.NoSuchProcess, ValueError):
        return False


def lock_held(record: Mapping[str, str]) -> bool | None:
    """Whether the recorded process still holds its lock; None unless it ran on this machine's kernel and its
    lock file is the very file seen here."""
    path, boot = record.get(LOCK_TAG), record.get(BOOT_TAG)
    if not path or not boot or boot != boot_id():
        return None
    try:
        with open(path, "rb") as probe:
            stat = os.fstat(probe.fileno())
            if f"{stat.st_dev}:{stat.st_ino}" != record.get(LOCK_ID_TAG):
                return None  # another file at the same path: another volume
            try:
                fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(probe, fcntl.LOCK_UN)
            return False
    except OSError:
        return None  # gone (its process ended cleanly) or not readable here
