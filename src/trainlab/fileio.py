"""Atomic file writes: a temp file beside the target, fsync, rename.

A reader (or a process restarted after ``kill -9``) sees the old file or the
new one, never half of one.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


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
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def remove_stale_parts(path: Path) -> None:
    """Delete temp files a killed writer of ``path`` left behind."""
    for stale in Path(path).parent.glob(f".{Path(path).name}.*.part"):
        stale.unlink(missing_ok=True)
