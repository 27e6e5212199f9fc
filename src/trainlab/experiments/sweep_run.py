"""A sweep as a recorded run: who leads it, its parent run, its ranking, and reading it back.

The first process on a study leads it: it opens the sweep's parent run (MLflow's
parent of every trial run, a run of job ``sweep`` in the W&B group), runs trials
like any worker, waits for the trials other workers still run, and records the
ranking, the best trial and Optuna's parameter importances on the parent. Other
processes (more workers, other machines) join: they only run trials. A leader
that died is replaced by the next process that starts on the study.

``sweep_ranking`` reads a sweep back from MLflow alone (through ``runs.py``), so a
teammate's sweep on the team server shows the same ranking.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from trainlab.config import Config, recorded_config
from trainlab.errors import RunNotFound, TrainlabError
from trainlab.experiments.study_open import FINISHED_ATTR, existing_study, open_study
from trainlab.experiments.study_queue import WORKER_ATTR, asking, budget_left, trials_left
from trainlab.experiments.study_ranking import TrialRow, best_so_far, importances, rank, trial_rows
from trainlab.experiments.study_storage import CONNECT_TIMEOUT_S, Sweep, journal_errors
from trainlab.experiments.trial_records import KILLED, trial_state
from trainlab.tracking.base import PARAMS_TAG, SWEEP_TAG, TRIAL_TAG
from trainlab.tracking.process import process_alive, this_process

if TYPE_CHECKING:
    import optuna

    from trainlab.tracking import Run

LEADER_ATTR, PARENT_ATTR = "leader", "parent_mlflow_id"
Warn = Callable[[str], None]


@dataclass(frozen=True)
class SweepOutcome:
    sweep_id: str
    metric: str
    goal: str
    rows: list[TrialRow]  # best first
    importances: dict[str, float]
    where: list[str]  # where the parent run is recorded (empty for a worker that joined)
    tracking_failures: dict[str, str]
    leader: dict[str, str] | None = None  # the leading process, when this one joined it

    @property
    def best(self) -> TrialRow | None:
        return best_so_far(self.rows)


CLAIM_SETTLE_S = 2.0  # a database without advisory locks: how long claims may take to land before one is read


@dataclass
class Lead:
    """This process leads the sweep; on PostgreSQL it holds the sweep's advisory lock on ``connection`` (the
    database lets go of it when the connection ends: a leader that dies, anywhere, frees the lead)."""

    connection: Any = None


def lead_lock_key(sweep_id: str) -> int:
    """The sweep's advisory lock: a signed 64-bit key of its id (PostgreSQL's key space)."""
    return int.from_bytes(hashlib.sha256(f"trainlab sweep lead {sweep_id}".encode()).digest()[:8], "big", signed=True)


def _advisory_lead(sweep: Sweep) -> Lead | None:
    """PostgreSQL's session advisory lock, tried once (no wait): a mutex across machines."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(sweep.storage, poolclass=NullPool,
                                      connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")  # no transaction left open
    try:
        if connection.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:key)"),
                              {"key": lead_lock_key(sweep.sweep_id)}).scalar():
            return Lead(connection)
    except BaseException:
        connection.close()
        raise
    connection.close()
    return None


def claim_lead(sweep: Sweep, study: optuna.Study) -> Lead | None:
    """This process leads the sweep unless another does: on PostgreSQL whoever holds its advisory lock; on one
    machine, a live leader recorded in the study (checked and claimed in one step, under the sweep's file lock)."""
    me = this_process()
    if sweep.storage.startswith("postgresql"):
        lead = _advisory_lead(sweep)
        if lead is not None:
            with asking(sweep):
                study.set_user_attr(LEADER_ATTR, me)  # who leads, for the processes that join
        return lead
    with asking(sweep):
        leader = study.user_attrs.get(LEADER_ATTR)
        if leader and process_alive(leader) is not False:
            return None
        study.set_user_attr(LEADER_ATTR, me)
    if sweep.local:
        return Lead()
    # another database (SQLite by URL, MySQL): nothing makes the check and the claim one step; the last to write
    # leads
    time.sleep(CLAIM_SETTLE_S)
    return Lead() if study.user_attrs.get(LEADER_ATTR) == me else None


def release_lead(sweep: Sweep, study: optuna.Study, lead: Lead) -> None:
    """The lead ends with the leader (finished, failed or stopped): the next process to run the sweep leads it,
    wherever it runs."""
    try:
        with asking(sweep):
            if study.user_attrs.get(LEADER_ATTR) == this_process():
                study.set_user_attr(LEADER_ATTR, {})
    except Exception:  # the study broke (a full disk, a damaged journal): a dead leader is replaced anyway, and
        pass  # the error that broke it is the one to report
    finally:
        if lead.connection is not None:
            lead.connection.close()  # the advisory lock goes with its session


def wait_for_parent(study: optuna.Study, timeout: float = 60.0) -> str | None:
    """A joining worker nests its trials under the leader's parent run (None: MLflow is not recording)."""
    deadline = time.monotonic() + timeout
    while PARENT_ATTR not in study.user_attrs and time.monotonic() < deadline:
        time.sleep(0.5)
    return study.user_attrs.get(PARENT_ATTR) or None


@contextmanager
def parent_run(sweep: Sweep, cfg: Config, study: optuna.Study, warn: Warn) -> Iterator[Run]:
    """The sweep's own run: started (or taken up again) before the first trial, ended after the last."""
    from trainlab.experiment import STARTUP_WAIT_S
    from trainlab.run_setup import check_storage, run_lock
    from trainlab.tracking import Run, RunInfo, create_trackers

    spec = sweep.spec
    check_storage(cfg)
    trackers = create_trackers(cfg.tracking)
    tags = {**this_process(), "job": "sweep", SWEEP_TAG: sweep.sweep_id, "sweep_method": spec.method,
            "sweep_metric": spec.metric, "sweep_goal": spec.goal}
    info = RunInfo(run_id=sweep.sweep_id, run_dir=sweep.folder, experiment=cfg.name,
                   config={"sweep": spec.source, "base": recorded_config(cfg)}, tags=tags,
                   resumed=(sweep.folder / "run.json").is_file() or PARENT_ATTR in study.user_attrs,
                   job="sweep", group=sweep.sweep_id)
    with run_lock(sweep.folder, sweep.sweep_id), \
            Run(info, trackers, finish_timeout=cfg.tracking.finish_timeout, warn=warn) as run:
        run.wait_started(STARTUP_WAIT_S)
        mlflow = next((t for t in trackers if t.name == "mlflow"), None)
        study.set_user_attr(PARENT_ATTR, getattr(mlflow, "run_id", "") or "")
        run.log_params({"method": spec.method, "metric": spec.metric, "goal": spec.goal,
                        "run_cap": str(spec.run_cap), "time_budget": str(spec.time_budget), "seeds": str(spec.seeds),
                        "pruner": spec.pruner, "parameters": ", ".join(p.key for p in spec.params),
                        "study_storage": sweep.storage})
        run.log_dict("sweep.yaml", spec.source)
        run.log_dict("config.yaml", recorded_config(cfg))
        yield run


def wait_for_trials(study: optuna.Study, on_poll: Callable[[], None], poll: float = 2.0) -> None:
    """Until no trial runs anywhere (a trial whose process died on this machine does not count)."""
    from optuna.trial import TrialState

    while any(process_alive(t.user_attrs.get(WORKER_ATTR, {})) is not False
              for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))):
        on_poll()
        time.sleep(poll)


def record_ranking(run: Run, sweep: Sweep, study: optuna.Study) -> tuple[list[TrialRow], dict[str, float]]:
    """The parent's final record: ranking, best trial (chosen on validation, its test metrics beside), importances."""
    spec = sweep.spec
    rows = trial_rows(study, spec)
    found = importances(study)
    run.log_dict("ranking.json", [asdict(r) for r in rows])
    run.log_dict("importances.json", found)
    counts = {state: sum(r.state == state for r in rows) for state in ("complete", "pruned", "failed", KILLED)}
    summary: dict[str, float] = {f"trials_{k}": float(v) for k, v in counts.items()}
    best = best_so_far(rows)
    if best is not None and best.value is not None:
        summary[f"best_{spec.metric}"] = best.value
        summary.update({f"best_test_{k}": v for k, v in best.test.items()})
        run.set_tags({"best_trial": str(best.number), "best_run": best.run_ids[0] if best.run_ids else "",
                      "best_params": json.dumps(best.params, default=str)[:5000]})
    summary.update({f"importance_{k}": v for k, v in found.items()})
    run.log_summary(summary)
    return rows, found


# -- reading a sweep back from the record --------------------------------------------------------


def sweep_ranking(sweep_id: str, uri: str | None = None) -> SweepOutcome:
    """A sweep's ranking from MLflow: its parent run and every trial run (seeds averaged per trial)."""
    from trainlab.run_listing import list_runs

    found = list_runs(uri, filter_string=f"tags.{SWEEP_TAG} = '{sweep_id}'", limit=50_000)
    parent = next((r for r in found if r.tags.get("job") == "sweep"), None)
    if parent is None:
        raise RunNotFound(f"no sweep {sweep_id!r} in the MLflow store; list sweeps with "
                          "`trainlab runs --filter \"tags.job = 'sweep'\"`")
    metric, goal = parent.tags.get("sweep_metric", "val_accuracy"), parent.tags.get("sweep_goal", "maximize")
    trials: dict[int, list[Any]] = {}
    for r in found:
        if r.tags.get("job") != "sweep" and TRIAL_TAG in r.tags:
            trials.setdefault(int(r.tags[TRIAL_TAG]), []).append(r)
    seeds = int(parent.params.get("seeds", "1") or 1)
    rows = []
    for number, runs in trials.items():
        runs.sort(key=lambda r: int(r.tags.get("sweep_seed", 0)))
        values = [r.metrics[f"best_{metric}"] for r in runs if f"best_{metric}" in r.metrics]
        first = runs[0]
        state = trial_state([r.status for r in runs], len(values), seeds,
                            any(r.tags.get("stop_reason") == "pruned" for r in runs))
        complete = state == "complete" and values
        test = {k: statistics.fmean(r.metrics[f"test_{k}"] for r in runs)
                for k in ("accuracy", "macro_f1", "auroc", "log_loss")
                if complete and all(f"test_{k}" in r.metrics for r in runs)}
        rows.append(TrialRow(
            number=number, state=state, params=json.loads(first.tags.get(PARAMS_TAG, "{}")),
            value=statistics.fmean(values) if complete else None, values=values,
            epochs=int(first.metrics.get("epochs_run", 0)) or 0, latest=first.metrics.get(metric),
            run_ids=[r.run_id for r in runs], test=test,
            # the trial's wall time, as the study measures it: its first seed's start to its last seed's end
            seconds=(max(r.end_ms or 0 for r in runs) - min(r.start_ms for r in runs)) / 1000
            if all(r.end_ms for r in runs) else None,
        ))
    found_importances = {k.removeprefix("importance_"): v for k, v in parent.metrics.items()
                         if k.startswith("importance_")}
    return SweepOutcome(sweep_id, metric, goal, rank(rows, goal), found_importances, [], {})


@dataclass(frozen=True)
class SweepStatus:
    """A sweep before this process works on it: finished already (its outcome), or how many trials are left."""

    finished: SweepOutcome | None
    left: int | None  # configurations that may still start (None: bounded by time alone)


def sweep_status(sweep: Sweep, warn: Warn = lambda message: None) -> SweepStatus:
    """Whether the sweep ran its whole budget and recorded its ranking (read from its study), else what is left."""
    from optuna.trial import TrialState

    from trainlab.tracking import read_run_record

    spec = sweep.spec
    with journal_errors(sweep):
        study = existing_study(sweep, warn)
    if study is None:
        return SweepStatus(None, spec.trial_cap)
    left = trials_left(study, spec)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    recorded = study.user_attrs.get(FINISHED_ATTR) or (  # sweeps from before the mark: the parent run's end
        (sweep.folder / "run.json").is_file() and read_run_record(sweep.folder).get("status") == "finished")
    if not recorded or budget_left(study, spec) or left or running:
        return SweepStatus(None, left)
    rows = trial_rows(study, spec)
    return SweepStatus(SweepOutcome(sweep.sweep_id, spec.metric, spec.goal, rows, importances(study), [], {}), 0)


def run_sweep(sweep: Sweep, cfg: Config, *, work: Callable[[optuna.Study, str | None], None],
              on_poll: Callable[[], None] = lambda: None, warn: Warn = lambda message: None,
              worker_index: int = 0) -> SweepOutcome:
    """Lead the sweep (parent run, ranking) or join it; ``work(study, parent_mlflow_id)`` runs the trials."""
    with journal_errors(sweep):
        return _lead_or_join(sweep, cfg, work, on_poll, warn, worker_index)


def _lead_or_join(sweep: Sweep, cfg: Config, work: Callable[[optuna.Study, str | None], None],
                  on_poll: Callable[[], None], warn: Warn, worker_index: int) -> SweepOutcome:
    spec = sweep.spec
    study = open_study(sweep, worker_index, warn=warn)
    lead = claim_lead(sweep, study)
    if lead is None:
        work(study, wait_for_parent(study))
        return SweepOutcome(sweep.sweep_id, spec.metric, spec.goal, trial_rows(study, spec), {}, [], {},
                            leader=study.user_attrs.get(LEADER_ATTR))
    try:
        with parent_run(sweep, cfg, study, warn) as run:
            work(study, study.user_attrs.get(PARENT_ATTR) or None)
            wait_for_trials(study, on_poll)
            rows, found = record_ranking(run, sweep, study)
        where, failures = run.where(), dict(run.failures)
        if not budget_left(study, spec) and not trials_left(study, spec):
            study.set_user_attr(FINISHED_ATTR, True)  # run again, it shows this ranking (`--new` starts afresh)
            register_best(cfg, spec.goal, rows, where, failures)
    finally:
        release_lead(sweep, study, lead)
    return SweepOutcome(sweep.sweep_id, spec.metric, spec.goal, rows, found, where, failures)


def register_best(cfg: Config, goal: str, rows: list[TrialRow], where: list[str], failures: dict[str, str]) -> None:
    """``register_as`` of a sweep: the best trial's best seed run, registered once the sweep has ended."""
    from trainlab.mlflow_model import register  # MLflow's registry client, imported only when asked for
    from trainlab.runs import Record

    best = best_so_far(rows)
    if not cfg.register_as or "mlflow" not in cfg.tracking.trackers or best is None or not best.run_ids:
        return
    seeds = list(zip(best.values, best.run_ids))
    run_id = (max if goal == "maximize" else min)(seeds)[1] if len(seeds) == len(best.run_ids) else best.run_ids[0]
    try:
        _, version = register(Record(cfg.tracking.mlflow_uri), run_id, cfg.register_as)
    except TrainlabError as exc:
        failures["model registry"] = str(exc)
        return
    where.append(f"registered the best trial's run {run_id} (trial {best.number}) as models:/{cfg.register_as}/{version}")
