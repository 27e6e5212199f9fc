"""A local sweep journal's upkeep: a damaged one found, named and moved aside before Optuna reads it.

    study.journal (Optuna's log: one JSON record per line) -> checked -> read by Optuna, or moved aside whole

A full disk or a kill in the middle of a write leaves a cut last line; the next
process to write appends to it, and from then on Optuna cannot read the journal
at all. So a journal is checked, under Optuna's own lock (no other process writes
meanwhile), each time a sweep opens it: the first line that is cut, not UTF-8 or
not a JSON record is damage. A damaged journal is moved aside whole (nothing is
deleted) and the study is rebuilt from its trials' run records (``study_open.py``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_GRACE_S = 30  # a lock older than this was left by a killed process (Optuna takes it over)


@dataclass(frozen=True)
class Damage:
    """Where a journal stops being readable, and where the whole file was moved."""

    line: int  # 1-based
    offset: int  # bytes of complete records before it
    moved_to: Path

    def describe(self, sweep_id: str) -> str:
        return (f"sweep {sweep_id}: its journal is damaged at line {self.line} (byte {self.offset}: a cut or "
                f"garbled record, left by a full disk or a kill mid-write); moved aside whole to {self.moved_to}")


def first_damage(path: Path) -> tuple[int, int] | None:
    """(line, byte offset) of the first record that is cut, not UTF-8 or not a JSON object; None if all are whole."""
    offset = 0
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.endswith(b"\n") or not _is_record(line):
                return number, offset
            offset += len(line)
    return None


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError):
        return False


def set_aside_if_damaged(path: Path) -> Damage | None:
    """Check the journal at ``path`` under Optuna's lock; a damaged one is renamed to ``<name>.damaged-<time>``
    (so the sweep starts from a missing journal, which it rebuilds) and described."""
    from optuna.storages.journal import JournalFileSymlinkLock

    lock_file = Path(f"{path}.lock")  # Optuna's lock: a symlink to the journal
    if lock_file.is_symlink() and not lock_file.exists():
        lock_file.unlink(missing_ok=True)  # it points at a journal that is gone: Optuna would wait on it forever
    if not path.is_file():
        return None
    lock = JournalFileSymlinkLock(str(path), grace_period=LOCK_GRACE_S)
    lock.acquire()
    try:
        found = first_damage(path)
        if found is None:
            return None
        moved = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.replace(path, moved)
        return Damage(found[0], found[1], moved)
    finally:
        lock.release()
