"""Where a sweep's Optuna study lives, and opening that storage: the ``Sweep`` every worker sees (its id, spec,
base config, storage and run folder); Optuna's journal file in the sweep's folder locally (safe for parallel
processes, unlike SQLite; a damaged one is set aside first, ``journal.py``), or a PostgreSQL database across
machines (the race to create its tables, a server that never answers); and a journal damaged while the sweep
runs, said in one line naming the fix. Creating, joining or rebuilding the study itself is ``study_open.py``.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainlab.config import Config, config_to_dict, recorded_config
from trainlab.errors import StudyError
from trainlab.experiments.journal import set_aside_if_damaged
from trainlab.experiments.sweep_spec import SweepSpec, sweep_id
from trainlab.redaction import redact

JOURNAL = "study.journal"
Warn = Callable[[str], None]


@dataclass(frozen=True)
class Sweep:
    """A sweep as every worker sees it: its id, spec, base config and where its study lives."""

    sweep_id: str
    spec: SweepSpec
    base: dict[str, Any]  # the run config every trial starts from (plain values)
    storage: str  # Optuna storage URL, or a journal file path
    folder: Path  # the sweep's run folder (runs/<sweep_id>): its parent run's record and, locally, its study

    @property
    def local(self) -> bool:
        return "://" not in self.storage


def make_sweep(spec: SweepSpec, cfg: Config, storage: str | None = None, known_id: str | None = None) -> Sweep:
    """The sweep of ``spec`` over the base run config ``cfg``; its study lives in ``storage`` (default: a
    journal file in the sweep's folder). ``known_id``: a sweep being resumed by its id."""
    sid = known_id or sweep_id(spec, recorded_config(cfg))
    folder = Path(cfg.output_dir) / sid
    return Sweep(sid, spec, config_to_dict(cfg), storage or str(folder / JOURNAL), folder)

def storage_for(sweep: Sweep, warn: Warn = lambda message: None) -> Any:
    """Optuna's journal file locally (safe for parallel processes, unlike SQLite), or a database URL. A damaged
    journal is moved aside (and said): the sweep then finds none, and rebuilds it from its trials' records."""
    import optuna

    if not sweep.local:
        try:
            return _rdb_storage(sweep.storage)
        except Exception as exc:  # a wrong URL, a missing driver, a server that refuses
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            raise StudyError(f"cannot open the sweep storage {redact(sweep.storage)}: {redact(reason)}; check the "
                              "URL, that the server is up, and that its driver (psycopg) is installed") from None
    path = Path(sweep.storage).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    damage = set_aside_if_damaged(path)
    if damage is not None:
        warn(damage.describe(sweep.sweep_id) + "; the sweep is rebuilt from its trials' run records")
    # an absolute path: Optuna's lock is a symlink to the journal, and one a killed process leaves behind must
    # point at it for the lock's grace period to apply (a relative one dangled, and every later sweep hung)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


@contextmanager
def journal_errors(sweep: Sweep) -> Iterator[None]:
    """A journal that became unreadable while the sweep ran (another process cut a record: a full disk, a kill
    mid-write) is one line naming the fix, not Optuna's traceback."""
    try:
        yield
    except ValueError as exc:  # json's and UTF-8's decode errors, and Optuna's "Invalid log format."
        frames = traceback.extract_tb(exc.__traceback__)
        if not sweep.local or not any("optuna/storages/journal" in f.filename.replace("\\", "/") for f in frames):
            raise
        raise StudyError(f"sweep {sweep.sweep_id}: its journal {sweep.storage} became unreadable while the sweep ran "
                         "(a record cut by a full disk or a kill mid-write); run the same command again: the damage "
                         "is set aside and the sweep goes on from its runs' records") from None


CONNECT_TIMEOUT_S = 10  # seconds to reach a PostgreSQL study storage


def _rdb_storage(url: str, attempts: int = 5) -> Any:
    """Optuna's database storage; machines that start together on a new database race to create its tables:
    the losers find them created on a second attempt."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    # a server that never answers is one line within seconds, not minutes of the driver's waiting
    engine = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}} if url.startswith("postgresql") else None
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=None, engine_kwargs=engine)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(1.0 + attempt)
