"""Read a W&B offline run file (run-*.wandb) back into plain values: config, history, summary, artifacts.

The file format and its record reader live in ``trainlab.tracking.wandb_file``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab.tracking.wandb_file import raw_records


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


@dataclass
class OfflineRun:
    run_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    stats: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    group: str = ""
    job_type: str = ""
    exit_code: int | None = None


def read_offline_run(path: Path, wait: float = 30.0) -> OfflineRun:
    """The run as recorded; waits up to ``wait`` seconds for its exit record.

    ``run.finish()`` returns before wandb's service has written everything to the file
    (the process's exit waits for it, a test reading the file right away may not).
    """
    deadline = time.monotonic() + wait
    while (run := _read_once(path)).exit_code is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return run


def _read_once(path: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    run = OfflineRun()
    for raw in raw_records(path):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":  # the first carries everything; later ones (a tag change) only what changed
            run.run_id = record.run.run_id or run.run_id
            run.tags = list(record.run.tags) or run.tags
            run.group = record.run.run_group or run.group
            run.job_type = record.run.job_type or run.job_type
            for item in record.run.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_key(item)] = json.loads(item.value_json)
        elif kind == "stats":
            run.stats.append({_key(i): json.loads(i.value_json) for i in record.stats.item})
        elif kind == "artifact":
            run.artifacts.append({"name": record.artifact.name, "type": record.artifact.type,
                                  "files": [m.path for m in record.artifact.manifest.contents]})
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def offline_run_file(root: Path, run_id: str) -> Path:
    """The newest run file of ``run_id`` under ``root``/wandb."""
    files = sorted(Path(root).glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))
    if not files:
        raise FileNotFoundError(f"no offline W&B run {run_id} under {root}/wandb")
    return files[-1]
