"""Who may start a sweep's next trial: the budget (run_cap, a grid's queue, time_budget) counted from the trials
in the study, and the trials left; workers on one machine taking turns to check it and ask; a trial stopped with
its process marked killed and its configuration queued again (killed trials do not count: they run again),
unless its runs all recorded their end first, when it is settled from those records instead.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.experiments.study_storage import Sweep, Warn
from trainlab.experiments.sweep_spec import SweepSpec
from trainlab.experiments.trial_records import KILLED, TrialRecord
from trainlab.tracking.process import process_alive

if TYPE_CHECKING:
    import optuna


WORKER_ATTR, RESULT_ATTR = "worker", "result"  # a trial's process (host, pid, start); its runs and scores
UNUSED = "unused"  # a grid trial asked for when the queue had just run dry: not a configuration of the sweep
UNCLAIMED_S = 120.0


def requeue_killed(study: optuna.Study, trial_id: int, number: int, params: dict[str, Any]) -> None:
    """A trial stopped with its process: marked killed (not failed), and its configuration queued again: the
    grid's configuration it was given, even if it died before taking it up (its params are still empty)."""
    from optuna.trial import TrialState

    # Optuna has no public call for another process's trial
    queued = study._storage.get_trial(trial_id).system_attrs.get("fixed_params") or {}
    study._storage.set_trial_user_attr(trial_id, KILLED, True)
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    study.enqueue_trial({**queued, **params}, user_attrs={"retry_of": number})


def reclaim_dead_trials(study: optuna.Study, warn: Warn,
                        records: dict[int, TrialRecord] | None = None) -> list[TrialRecord]:
    """Trials still running whose process is gone. One whose runs all recorded their end (the process died
    after that, before telling the study) is settled from those records: running it again would train it twice.
    The others are marked killed and queued again with the same parameters; their records are returned."""
    from optuna.trial import TrialState

    reclaimed, settled, killed = [], [], []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        alive = process_alive(trial.user_attrs.get(WORKER_ATTR, {}))
        unclaimed = WORKER_ATTR not in trial.user_attrs and trial.datetime_start is not None and \
            time.time() - trial.datetime_start.timestamp() > UNCLAIMED_S  # its worker died between ask and claim
        if alive is not False and not unclaimed:
            continue  # alive, or on another machine: its own worker owns it
        record = (records or {}).get(trial.number)
        if record is not None and record.state in ("complete", "pruned", "failed"):
            settle_from_record(study, trial, record)
            settled.append(trial.number)
            continue
        requeue_killed(study, trial._trial_id, trial.number, trial.params)
        reclaimed.append(trial.number)
        killed += [record] if record is not None else []
    if settled:
        warn(f"trial(s) {', '.join(map(str, settled))} ended before their process died; their results are taken "
             "from their runs' records")
    if reclaimed:
        warn(f"trial(s) {', '.join(map(str, reclaimed))} stopped with their process; marked killed and queued again")
    return killed


def settle_from_record(study: optuna.Study, trial: optuna.trial.FrozenTrial, record: TrialRecord) -> None:
    """Tell the study how a trial ended, as its runs recorded it."""
    from optuna.trial import TrialState

    study._storage.set_trial_user_attr(  # Optuna has no public call for another process's trial
        trial._trial_id, RESULT_ATTR, {"run_ids": record.run_ids, "seed_values": record.values, "test": record.test})
    if record.state == "complete":
        study.tell(trial.number, statistics.fmean(record.values), skip_if_finished=True)
    else:
        study.tell(trial.number, state=TrialState.PRUNED if record.state == "pruned" else TrialState.FAIL,
                   skip_if_finished=True)


def from_queue(study: optuna.Study, number: int) -> bool:
    """The trial was one of the queued configurations (a grid's), not a fresh sample."""
    frozen = next(t for t in reversed(study.get_trials(deepcopy=False)) if t.number == number)
    return "fixed_params" in frozen.system_attrs


def budget_left(study: optuna.Study, spec: SweepSpec) -> bool:
    """Another trial may start: the configurations that ran (or run) stay under run_cap / the grid, and the
    trial time so far under time_budget. Killed trials do not count: they are run again."""
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if not (t.user_attrs.get(KILLED) or t.user_attrs.get(UNUSED))]
    if spec.method == "grid" and not any(t.state == TrialState.WAITING for t in trials):
        return False
    counted = [t for t in trials if t.state != TrialState.WAITING]
    if spec.run_cap is not None and len(counted) >= spec.run_cap:
        return False
    if spec.time_budget is not None:
        now = time.time()
        used = sum(((t.datetime_complete.timestamp() if t.datetime_complete else now)
                    - t.datetime_start.timestamp()) for t in counted if t.datetime_start)
        if used >= spec.time_budget:
            return False
    return True


def trials_left(study: optuna.Study | None, spec: SweepSpec) -> int | None:
    """Configurations that may still start (None: bounded by time alone); killed trials count as left."""
    from optuna.trial import TrialState

    if study is None:
        return spec.trial_cap
    trials = [t for t in study.get_trials(deepcopy=False) if not (t.user_attrs.get(KILLED) or t.user_attrs.get(UNUSED))]
    dead = sum(t.state == TrialState.RUNNING and process_alive(t.user_attrs.get(WORKER_ATTR, {})) is False
               for t in trials)  # to be marked killed and run again
    caps = []
    if spec.method == "grid":
        caps.append(sum(t.state == TrialState.WAITING for t in trials) + dead)
    if spec.run_cap is not None:
        caps.append(max(0, spec.run_cap - sum(t.state != TrialState.WAITING for t in trials) + dead))
    return min(caps) if caps else None


@contextmanager
def asking(sweep: Sweep) -> Iterator[None]:
    """Workers on this machine take turns to check the budget and ask, so none overshoots it."""
    if not sweep.local:
        yield  # across machines a run_cap may be overshot by a trial in flight; a grid never (its queue)
        return
    from filelock import FileLock

    Path(sweep.storage).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(Path(sweep.storage).with_suffix(".ask.lock")), timeout=120):
        yield
