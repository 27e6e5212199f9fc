"""W&B's offline run file (``run-*.wandb``), read with wandb's own protobuf classes.

wandb 0.31 has no public reader. The file is a 7-byte header (":W&B", magic,
version) then 32 KiB blocks of LevelDB-log records: a 7-byte header (crc32,
length, type: 1 full, 2 first, 3 middle, 4 last) and the payload, a serialized
``wandb_internal_pb2.Record``. ``run.finish()`` returns before wandb's service
has written the run's last records; ``wait_for_exit_record`` is how trainlab
knows the offline copy is complete before it says the run is finished.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path: Path) -> Iterator[bytes]:
    """Every complete record's payload, in order; a record still being written is not returned."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file (header {data[:7]!r})")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        pos += HEADER
        if pos + length > len(data):
            return
        chunk = data[pos:pos + length]
        pos += length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def has_exit_record(path: Path) -> bool:
    from wandb.proto import wandb_internal_pb2 as pb

    if not Path(path).is_file():
        return False
    record = pb.Record()
    for raw in raw_records(path):
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "exit":
            return True
    return False


def wait_for_exit_record(path: Path, timeout: float) -> bool:
    """Wait (at most ``timeout`` s) until wandb's service has written the run's end to ``path``."""
    deadline = time.monotonic() + timeout
    while not has_exit_record(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
