"""Sweeps: an Optuna study whose trials are ordinary trainlab runs, nested under one sweep run.

    sweep file (W&B format) -> SweepSpec -> Optuna study (journal file locally, PostgreSQL across machines)
    each trial: ask -> config -> `seeds` runs in this process -> tell (mean objective, or pruned)

Trials run in the worker process, so the dataset, the imported libraries and the
tracking clients are loaded once per worker, not once per trial. The study is the
shared state: any number of workers (processes, machines) ask it for the next
configuration, and a grid's configurations are queued in it once, so each runs
exactly once. A trial whose process died (Ctrl-C, kill -9) is marked killed and
queued again; the budget counts what finished. Selection reads only the
validation metric; the test metrics are reported beside it.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from trainlab.config import Config, validate_config
from trainlab.errors import ConfigError, TrainingError
from trainlab.experiments.sweep_spec import Param, SweepSpec, apply_params, sweep_id
from trainlab.tracking.process import process_alive, this_process
from trainlab.tracking.run import KILL_WAIT_S
from trainlab.train import TrainCallbacks

if TYPE_CHECKING:
    import optuna

    from trainlab.experiment import RunOutcome

JOURNAL = "study.journal"
SWEEP_TAG, TRIAL_TAG, SEED_TAG, PARAMS_TAG = "sweep", "sweep_trial", "sweep_seed", "sweep_params"
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
    from trainlab.config import config_to_dict, recorded_config

    sid = known_id or sweep_id(spec, recorded_config(cfg))
    folder = Path(cfg.output_dir) / sid
    return Sweep(sid, spec, config_to_dict(cfg), storage or str(folder / JOURNAL), folder)


@dataclass(frozen=True)
class TrialRow:
    """One configuration in the ranking: its parameters, objective and runs."""

    number: int
    state: str  # complete, pruned, running, failed, killed
    params: dict[str, Any]
    value: float | None  # mean of the seeds' best validation metric
    values: list[float]  # per seed
    epochs: int  # reported so far (the first seed's)
    latest: float | None = None  # the last epoch's validation metric (of a running trial too)
    run_ids: list[str] = field(default_factory=list)
    test: dict[str, float] = field(default_factory=dict)  # mean test metrics, reported beside, never chosen on
    seconds: float | None = None


@dataclass
class _Trained:
    """A trial whose runs have trained; their records may still be ending."""

    trial: "optuna.Trial"
    values: dict[str, Any]
    outcomes: list["RunOutcome"]
    started: float


class SweepCallbacks(TrainCallbacks):
    """What a sweep tells its user while it runs; the defaults do nothing."""

    def on_trial_start(self, number: int, params: dict[str, Any], seed: int) -> None: ...
    def on_trial_end(self, row: TrialRow) -> None: ...


# -- the study ---------------------------------------------------------------------------------


def storage_for(sweep: Sweep) -> Any:
    """Optuna's journal file locally (safe for parallel processes, unlike SQLite), or a database URL."""
    import optuna

    if not sweep.local:
        try:
            return _rdb_storage(sweep.storage)
        except Exception as exc:  # a wrong URL, a missing driver, a server that refuses
            from trainlab.redaction import redact

            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            raise ConfigError(f"cannot open the sweep storage {redact(sweep.storage)}: {redact(reason)}; check the "
                              "URL, that the server is up, and that its driver (psycopg) is installed") from None
    path = Path(sweep.storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def _rdb_storage(url: str, attempts: int = 5) -> Any:
    """Optuna's database storage; machines that start together on a new database race to create its tables:
    the losers find them created on a second attempt."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=None)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(1.0 + attempt)


SPEC_ATTR, BASE_ATTR, READY_ATTR = "sweep_spec", "base_config", "ready"


def open_study(sweep: Sweep, worker_index: int = 0, wait_ready: float = 60.0) -> "optuna.Study":
    """Create the sweep's study (recording the spec and base config, queueing a grid once) or join it."""
    import optuna

    from trainlab.redaction import redact_mapping

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = sweep.spec
    storage = storage_for(sweep)
    options = dict(study_name=sweep.sweep_id, storage=storage, pruner=pruner_for(spec, sweep.base))
    with asking(sweep):
        try:
            study = optuna.create_study(direction=spec.goal, **options)
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(**options)
        else:
            study.set_user_attr(SPEC_ATTR, spec.source)
            study.set_user_attr(BASE_ATTR, redact_mapping(sweep.base))
            if spec.method == "grid":
                for values in grid(spec.params):
                    study.enqueue_trial(values)
            study.set_user_attr(READY_ATTR, True)
    deadline = time.monotonic() + wait_ready
    while not study.user_attrs.get(READY_ATTR):  # another machine is still queueing the grid
        if time.monotonic() > deadline:
            raise ConfigError(f"sweep {sweep.sweep_id}: its study was created but never made ready (the process "
                              "creating it died?); delete the study, then start the sweep again")
        time.sleep(0.5)
    # a fresh sweep with one worker draws the same configurations every time; a worker that joins, or a
    # sweep taken up again, draws its own (the same seed would repeat what already ran)
    seed = spec.sampler_seed + 7919 * len(study.get_trials(deepcopy=False)) + 104729 * worker_index
    # TPE samples at random until it has seen n_startup_trials (Optuna's default 10): a quarter of a small budget
    startup = max(3, min(10, (spec.run_cap or 40) // 4))
    study.sampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup) if spec.method == "bayes"
                     else optuna.samplers.RandomSampler(seed=seed))  # grid: its configurations are queued
    return study


def stored_sweep(sweep_id: str, storage: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sweep file and base config a study was created with (for `--resume SWEEP_ID`)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    probe = Sweep(sweep_id, None, {}, storage, Path(storage).parent)  # type: ignore[arg-type]
    if probe.local and not Path(storage).is_file():
        raise ConfigError(f"no sweep {sweep_id!r}: {storage} does not exist; start it with `trainlab sweep "
                          "SWEEP.yaml`, or pass --storage where its study lives")
    try:
        attrs = optuna.load_study(study_name=sweep_id, storage=storage_for(probe)).user_attrs
    except KeyError:
        raise ConfigError(f"no sweep {sweep_id!r} in {storage}; start it with `trainlab sweep SWEEP.yaml`, or "
                          "pass --storage where it lives") from None
    return attrs[SPEC_ATTR], attrs[BASE_ATTR]


def grid(params: Sequence[Param]) -> list[dict[str, Any]]:
    import itertools

    swept = [p for p in params if p.kind != "fixed"]
    return [dict(zip((p.key for p in swept), combo))
            for combo in itertools.product(*(_encoded(p, p.grid_values()) for p in swept))]


def pruner_for(spec: SweepSpec, base: dict[str, Any]) -> Any:
    import optuna

    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if spec.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if spec.pruner == "hyperband":
        epochs = validate_config(base).train.epochs
        settings = spec.pruner_settings
        return optuna.pruners.HyperbandPruner(min_resource=settings.get("min_iter", 1),
                                              max_resource=settings.get("max_iter", epochs),
                                              reduction_factor=settings.get("eta", 3))
    return optuna.pruners.NopPruner()


def _encoded(param: Param, values: Sequence[Any]) -> list[Any]:
    """Optuna stores str/int/float/bool/None; a whole architecture (a mapping) is stored as its JSON."""
    return [v if v is None or isinstance(v, (str, int, float, bool)) else json.dumps(v, sort_keys=True)
            for v in values]


def decode(param: Param, stored: Any) -> Any:
    """A value as Optuna stored it -> the config value (a JSON string back to its mapping)."""
    if param.kind != "choice":
        return stored
    return dict(zip(_encoded(param, param.choices), param.choices)).get(stored, stored)


def suggest(trial: "optuna.Trial", param: Param) -> Any:
    """The trial's value for ``param`` (decoded: mappings come back as mappings)."""
    if param.kind == "fixed":
        return param.choices[0]
    if param.kind == "choice":
        return decode(param, trial.suggest_categorical(param.key, _encoded(param, param.choices)))
    if param.kind == "int":
        return trial.suggest_int(param.key, int(param.low), int(param.high), step=int(param.q or 1))
    if param.q is not None and not param.log:
        return trial.suggest_float(param.key, param.low, param.high, step=param.q)
    value = trial.suggest_float(param.key, param.low, param.high, log=param.log)
    return round(round(value / param.q) * param.q, 12) if param.q else value


# -- who may start another trial ---------------------------------------------------------------


KILLED = "killed"
WORKER_ATTR, RESULT_ATTR = "worker", "result"  # a trial's process (host, pid, start); its runs and scores
UNUSED = "unused"  # a grid trial asked for when the queue had just run dry: not a configuration of the sweep
UNCLAIMED_S = 120.0


def reclaim_dead_trials(study: "optuna.Study", warn: Warn) -> list[int]:
    """Trials still running whose process is gone: marked killed and queued again with the same parameters."""
    from optuna.trial import TrialState

    reclaimed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        alive = process_alive(trial.user_attrs.get(WORKER_ATTR, {}))
        unclaimed = WORKER_ATTR not in trial.user_attrs and trial.datetime_start is not None and \
            time.time() - trial.datetime_start.timestamp() > UNCLAIMED_S  # its worker died between ask and claim
        if alive is not False and not unclaimed:
            continue  # alive, or on another machine: its own worker owns it
        study._storage.set_trial_user_attr(trial._trial_id, KILLED, True)  # Optuna has no public call for another's trial
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        reclaimed.append(trial.number)
    if reclaimed:
        warn(f"trial(s) {', '.join(map(str, reclaimed))} stopped with their process; marked killed and queued again")
    return reclaimed


def from_queue(study: "optuna.Study", number: int) -> bool:
    """The trial was one of the queued configurations (a grid's), not a fresh sample."""
    frozen = next(t for t in reversed(study.get_trials(deepcopy=False)) if t.number == number)
    return "fixed_params" in frozen.system_attrs


def budget_left(study: "optuna.Study", spec: SweepSpec) -> bool:
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


@contextmanager
def asking(sweep: Sweep) -> Iterator[None]:
    """Workers on this machine take turns to check the budget and ask, so none overshoots it."""
    if not sweep.local:
        yield  # across machines a run_cap may be overshot by a trial in flight; a grid never (its queue)
        return
    from filelock import FileLock

    with FileLock(str(Path(sweep.storage).with_suffix(".ask.lock")), timeout=120):
        yield


# -- running trials ----------------------------------------------------------------------------


class _Pruning(TrainCallbacks):
    """Reports the monitored metric after each epoch; stops the run when the pruner says so."""

    def __init__(self, trial: "optuna.Trial", metric: str, progress: TrainCallbacks | None) -> None:
        self.trial, self.metric, self.progress = trial, metric, progress

    def on_train_start(self, epochs: int, steps_per_epoch: int, first_epoch: int) -> None:
        if self.progress:
            self.progress.on_train_start(epochs, steps_per_epoch, first_epoch)

    def on_step(self, epoch: int, step: int, loss: float, images: int) -> None:
        if self.progress:
            self.progress.on_step(epoch, step, loss, images)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.progress:
            self.progress.on_epoch_end(epoch, metrics)

    def stop_reason(self, epoch: int, metrics: dict[str, float]) -> str | None:
        value = metrics[self.metric]
        if math.isfinite(value):
            self.trial.report(value, epoch)
        return "pruned" if self.trial.should_prune() else None


def trial_config(sweep: Sweep, values: dict[str, Any], threads: int | None) -> Config:
    """The run config of one configuration: the base with the swept values, monitored on the sweep's metric."""
    raw = apply_params(sweep.base, values)
    raw.setdefault("train", {})["monitor"] = sweep.spec.metric  # the best checkpoint is the one selected on
    raw.setdefault("tracking", {})["figures"] = False  # the report draws them from the predictions
    if threads:
        raw["threads"] = threads
    return validate_config(raw)


class Worker:
    """Runs trials in this process until the budget is spent; the dataset and clients stay loaded."""

    def __init__(self, sweep: Sweep, parent_mlflow_id: str | None, *, threads: int | None = None,
                 callbacks: SweepCallbacks | None = None, warn: Warn | None = None) -> None:
        self.sweep, self.parent, self.threads = sweep, parent_mlflow_id, threads
        self.callbacks = callbacks or SweepCallbacks()
        self.warn = warn or (lambda message: None)
        self._datasets: dict[str, Any] = {}

    def run(self, study: "optuna.Study") -> int:
        """Trials until the budget is spent; returns how many this worker ran.

        A trial's record ends (backends, then run folder) in the background while the next trial starts;
        the study is told the trial's result the moment its record has ended (not before: a kill in
        between re-runs the trial rather than leaving a finished trial with an unfinished record).
        """
        from optuna.trial import TrialState

        reclaim_dead_trials(study, self.warn)
        ran = 0
        settling: list[threading.Thread] = []
        try:
            while True:
                with asking(self.sweep):
                    if not budget_left(study, self.sweep.spec):
                        break
                    trial = study.ask()
                    trial.set_user_attr(WORKER_ATTR, this_process())
                if self.sweep.spec.method == "grid" and not from_queue(study, trial.number):
                    # another machine took the last queued configuration between our check and our ask
                    trial.set_user_attr(UNUSED, True)
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                trained = self.run_trial(study, trial)
                ran += 1
                if trained is not None:
                    settling = [t for t in settling if t.is_alive()]
                    settling.append(threading.Thread(target=self.settle, args=(study, trained),
                                                     name=f"trainlab-trial-{trial.number}-settle", daemon=True))
                    settling[-1].start()
        except BaseException:
            for thread in settling:  # interrupted: a short wait, else the trial is re-run as killed
                thread.join(KILL_WAIT_S)
            raise
        for thread in settling:
            thread.join()
        return ran

    def run_trial(self, study: "optuna.Study", trial: "optuna.Trial") -> "_Trained | None":
        """Train the trial's configuration (each seed); None when it failed and the study was told so."""
        from optuna.trial import TrialState

        from trainlab.experiment import run_experiment

        spec = self.sweep.spec
        values = {p.key: suggest(trial, p) for p in spec.params}
        cfg = trial_config(self.sweep, values, self.threads)
        trained = _Trained(trial, values, [], time.time())
        try:
            for index in range(spec.seeds):
                seed = cfg.seed + index
                self.callbacks.on_trial_start(trial.number, values, seed)
                run_id = f"{self.sweep.sweep_id}-t{trial.number:03d}" + (f"-s{seed}" if spec.seeds > 1 else "")
                tags = {SWEEP_TAG: self.sweep.sweep_id, TRIAL_TAG: str(trial.number), SEED_TAG: str(seed),
                        PARAMS_TAG: json.dumps(values, sort_keys=True, default=str)[:5000],
                        **({"mlflow.parentRunId": self.parent} if self.parent else {})}
                # only the first seed reports to the pruner: a pruned configuration skips its other seeds
                callbacks = _Pruning(trial, spec.metric, self.callbacks) if index == 0 else self.callbacks
                outcome = run_experiment(cfg.model_copy(update={"seed": seed}), callbacks=callbacks,
                                         dataset=self._dataset(cfg), run_id=run_id, warn=self.warn, job="trial",
                                         group=self.sweep.sweep_id, tags=tags, wait_for_trackers=False,
                                         end_in_background=True)
                trained.outcomes.append(outcome)
                if outcome.result.stop_reason == "pruned":
                    break
        except KeyboardInterrupt:
            trial.set_user_attr(KILLED, True)
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
        except TrainingError as exc:  # diverged: a bad configuration, not a broken sweep
            for o in trained.outcomes:
                o.wait_recorded()
            trial.set_user_attr("error", str(exc))
            trial.set_user_attr(RESULT_ATTR, {"run_ids": [o.run_id for o in trained.outcomes]})
            study.tell(trial, state=TrialState.FAIL)
            self.warn(f"trial {trial.number} failed: {exc}")
            self.callbacks.on_trial_end(TrialRow(trial.number, "failed", values, None, [], 0,
                                                 run_ids=[o.run_id for o in trained.outcomes],
                                                 seconds=time.time() - trained.started))
            return None
        except BaseException as exc:  # a broken sweep (disk, config): the trial failed, and it is not re-run
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:1000])
            study.tell(trial, state=TrialState.FAIL)
            raise
        return trained

    def settle(self, study: "optuna.Study", trained: _Trained) -> TrialRow:
        """Once the trial's runs are recorded to the end: tell the study its objective (or that it was pruned)."""
        from optuna.trial import TrialState

        for outcome in trained.outcomes:
            outcome.wait_recorded()
        trial, outcomes, spec = trained.trial, trained.outcomes, self.sweep.spec
        scores = [o.result.best_value for o in outcomes]
        test = {k: statistics.fmean(o.test.metrics[k] for o in outcomes)
                for k in ("accuracy", "macro_f1", "auroc", "log_loss")}
        trial.set_user_attr(RESULT_ATTR, {"run_ids": [o.run_id for o in outcomes], "seed_values": scores, "test": test})
        pruned = outcomes[-1].result.stop_reason == "pruned"
        if pruned:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, statistics.fmean(scores))
        history = outcomes[0].result.history
        row = TrialRow(trial.number, "pruned" if pruned else "complete", trained.values,
                       None if pruned else statistics.fmean(scores), scores, len(history),
                       latest=history[-1][spec.metric] if history else None, run_ids=[o.run_id for o in outcomes],
                       test=test, seconds=time.time() - trained.started)
        self.callbacks.on_trial_end(row)
        return row

    def _dataset(self, cfg: Config) -> Any:
        """Each distinct data config is loaded once per worker."""
        from trainlab.data import create_dataset

        key = cfg.data.model_dump_json()
        if key not in self._datasets:
            self._datasets[key] = create_dataset(cfg.data)
        return self._datasets[key]


# -- the ranking -------------------------------------------------------------------------------


def trial_rows(study: "optuna.Study", spec: SweepSpec) -> list[TrialRow]:
    """Every configuration so far, best first (by the validation objective), then pruned, running, failed."""
    from optuna.trial import TrialState

    names = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.RUNNING: "running",
             TrialState.FAIL: "failed", TrialState.WAITING: "queued"}
    params = {p.key: p for p in spec.params}
    rows = []
    for t in study.get_trials(deepcopy=False):
        state = KILLED if t.user_attrs.get(KILLED) else names.get(t.state, t.state.name.lower())
        if state == "queued" or t.user_attrs.get(UNUSED):
            continue
        values = {k: decode(params[k], v) if k in params else v for k, v in t.params.items()}
        reported = t.intermediate_values
        result = t.user_attrs.get(RESULT_ATTR, {})
        rows.append(TrialRow(
            number=t.number, state=state, params=values, value=t.value,
            values=list(result.get("seed_values", [])), epochs=len(reported),
            latest=reported[max(reported)] if reported else None, run_ids=list(result.get("run_ids", [])),
            test=dict(result.get("test", {})),
            seconds=(t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start else None,
        ))
    return rank(rows, spec.goal)


def rank(rows: Sequence[TrialRow], goal: str) -> list[TrialRow]:
    """Completed configurations best first (on the validation objective), then running, pruned, failed, killed."""
    sign = -1.0 if goal == "maximize" else 1.0
    order = {"complete": 0, "running": 1, "pruned": 2, "failed": 3, KILLED: 4}
    return sorted(rows, key=lambda r: (order.get(r.state, 5), sign * (r.value if r.value is not None else 0.0),
                                       r.number))


def best_so_far(rows: Sequence[TrialRow]) -> TrialRow | None:
    return next((r for r in rows if r.state == "complete" and r.value is not None), None)


def importances(study: "optuna.Study") -> dict[str, float]:
    """Optuna's parameter importances; empty when too few trials finished to tell."""
    import optuna

    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "too few trials": then the importances are equal, and say so
            return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


def threads_per_worker(workers: int) -> int | None:
    """Oversubscribed torch threads on a small CPU are many times slower: the cores are shared out."""
    return max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
