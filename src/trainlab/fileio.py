"""Atomic file writes: a temp file beside the target, fsync, rename.

A reader (or a process restarted after ``kill -9``) sees the old file or the
new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from trainlab.errors import StorageError

PROBE_BYTES = 64 * 1024  # a disk without room for this cannot hold a run's first files


@contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write through the yielded handle; ``path`` appears only if the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename not in (None, str(tmp)):
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from None  # the file the user knows, not the temp file
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def check_writable(folder: Path, what: str) -> None:
    """Before any work: ``folder`` (or the nearest folder above it that exists) takes a new file.

    A real probe, not ``os.access``: root passes every permission check but not a read-only
    mount, and a full disk shows only when a file is written. Nothing is left behind.
    """

    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StorageError(f"cannot create the {what} {folder}: {existing} is a file, not a folder; move it away "
                           "or choose another folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".trainlab-probe-") as probe:
            probe.write(b"x" * PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise StorageError(f"cannot write the {what} {folder}: {(exc.strerror or str(exc)).lower()} (in {existing}); "
                           "free some space, fix the permissions or choose another folder") from None


def remove_stale_parts(folder: Path, name: str = "*") -> None:
    """Delete the temp files (``.<name>.<pid>.part``) that writers killed mid-write left in ``folder``; a writer
    still running keeps its own."""
    import psutil

    if not Path(folder).is_dir():
        return
    for part in Path(folder).glob(f".{name}.*.part"):
        pid = part.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
            part.unlink(missing_ok=True)
