"""A sweep's trials as their runs recorded them: the truth a lost or damaged study is rebuilt from.

    runs/<sweep>-t<N>[-s<seed>]/run.json + summary.json + metrics.jsonl -> TrialRecord per trial number

Every trial run is tagged with its sweep, trial number, seed and parameters, and
its folder holds its status, best validation value and test metrics. That is
enough to tell, per trial, whether it finished (and with what score), was pruned,
failed, or was killed and must run again. Nothing here opens the study.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from trainlab.tracking.base import PARAMS_TAG, SEED_TAG, SWEEP_TAG, TRIAL_TAG, says_disk_full  # noqa: F401 (named here too)
from trainlab.tracking.folder_backend import read_history, read_run_record
from trainlab.tracking.process import process_alive

KILLED = "killed"
TEST_METRICS = ("accuracy", "macro_f1", "auroc", "log_loss")


@dataclass(frozen=True)
class TrialRecord:
    """One trial number as its runs recorded it."""

    number: int
    state: str  # complete, pruned, failed, killed, running
    params: dict[str, Any]  # as the sweep_params tag holds them (decoded: a whole architecture is a mapping)
    values: list[float]  # each seed's best validation metric
    run_ids: list[str]
    test: dict[str, float]  # mean test metrics of a complete trial
    started: datetime | None
    ended: datetime | None
    history: dict[int, float]  # the first seed's metric per epoch (what the pruner was told)
    process: dict[str, str]  # the process that ran it (for a trial still running)
    recorded: list[str] = field(default_factory=list)  # each run's status as its run.json says it


def trial_state(statuses: list[str], results: int, seeds: int, pruned: bool) -> str:
    """A trial's state from its runs': one still running, killed or failed decides it; a trial whose seeds did
    not all finish (its process died between two seeds) was killed, and the sweep ran it again."""
    if pruned:
        return "pruned"
    for status, state in (("RUNNING", "running"), ("KILLED", KILLED), ("FAILED", "failed")):
        if status in statuses:
            return state
    return "complete" if results >= seeds and results == len(statuses) else KILLED


def trial_records(output_dir: Path, sweep_id: str, metric: str, seeds: int) -> dict[int, TrialRecord]:
    """Every trial of ``sweep_id`` that left a run folder under ``output_dir``, by trial number. A run whose
    process died while it was running counts as killed; an unreadable run record, as no record."""
    pattern = re.compile(rf"{re.escape(sweep_id)}-t(\d+)(?:-s\d+)?")
    runs: dict[int, list[tuple[dict[str, Any], Path]]] = {}
    for folder in Path(output_dir).glob(f"{sweep_id}-t*"):
        found = pattern.fullmatch(folder.name)
        if found is None:
            continue
        try:
            record = read_run_record(folder)
        except (OSError, ValueError):
            continue  # cut by a kill or a full disk: as if the run had not started
        tags, number = record.get("tags", {}), int(found.group(1))
        if tags.get(SWEEP_TAG) == sweep_id and tags.get(TRIAL_TAG) == str(number):
            runs.setdefault(number, []).append((record, folder))
    return {number: _record(number, sorted(found, key=lambda r: int(r[0]["tags"].get(SEED_TAG, 0))), metric, seeds)
            for number, found in runs.items()}


def _record(number: int, runs: list[tuple[dict[str, Any], Path]], metric: str, seeds: int) -> TrialRecord:
    statuses, values, summaries = [], [], []
    for record, folder in runs:
        status = str(record.get("status", "")).upper()
        if status == "RUNNING" and process_alive(record.get("tags", {})) is False:
            status = "KILLED"
        elif status == "FAILED" and says_disk_full(str(record.get("error") or "")):
            status = "KILLED"  # a full disk is the machine's fault, not the configuration's: it is trained again
        elif status == "FINISHED" and any(says_disk_full(str(why))
                                          for why in (record.get("tracking_failures") or {}).values()):
            status = "KILLED"  # a backend's record of it was cut by a full disk: trained again, as settle() does
        statuses.append(status)
        summary = _summary(folder)
        summaries.append(summary)
        if status == "FINISHED" and f"best_{metric}" in summary:
            values.append(float(summary[f"best_{metric}"]))
    first = runs[0][0]
    pruned = any(r.get("tags", {}).get("stop_reason") == "pruned" for r, _ in runs)
    state = trial_state(statuses, len(values), seeds, pruned)
    test = {k: statistics.fmean(s[f"test_{k}"] for s in summaries) for k in TEST_METRICS
            if state == "complete" and all(f"test_{k}" in s for s in summaries)}
    ended = [r.get("ended") for r, _ in runs]
    return TrialRecord(
        number=number, state=state, params=json.loads(first.get("tags", {}).get(PARAMS_TAG) or "{}"),
        values=values, run_ids=[r.get("run_id", f.name) for r, f in runs], test=test,
        started=_when(min((r.get("started") or "" for r, _ in runs), default="")),
        ended=_when(max(ended)) if all(ended) else None,  # type: ignore[type-var]
        history={int(m.get("step", i + 1)): float(m[metric]) for i, m in enumerate(_history(runs[0][1]))
                 if metric in m},
        process=dict(first.get("tags", {})), recorded=[str(r.get("status", "")) for r, _ in runs])


def _summary(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _history(folder: Path) -> list[dict[str, float]]:
    try:
        return read_history(folder)
    except (OSError, ValueError):
        return []


def _when(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
