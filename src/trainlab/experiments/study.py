"""A sweep's Optuna study: where it lives, what it queues and samples, who may start the next trial, and the
ranking it holds.

    sweep file (W&B format) -> SweepSpec -> Optuna study (journal file locally, PostgreSQL across machines)

The study is the shared state of a sweep: any number of workers (processes,
machines) ask it for the next configuration, and a grid's configurations are
queued in it once, so each runs exactly once. A trial whose process died
(Ctrl-C, kill -9) is marked killed and queued again; the budget counts what
finished. Nothing here trains or records a run (that is ``sweep.py``).
"""

from __future__ import annotations

import json
import math
import statistics
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.config import Config, validate_config
from trainlab.errors import ConfigError, RunNotFound, StudyError
from trainlab.experiments.journal import set_aside_if_damaged
from trainlab.experiments.sweep_spec import Param, SweepSpec, check_sweep_id, sweep_id

# what a sweep's runs are tagged with, so the sweep can be read back from MLflow alone
from trainlab.experiments.trial_records import (  # noqa: F401
    KILLED,
    PARAMS_TAG,
    SEED_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    TrialRecord,
    trial_records,
)
from trainlab.tracking.process import process_alive

if TYPE_CHECKING:
    import optuna

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


# -- the study ---------------------------------------------------------------------------------


def storage_for(sweep: Sweep, warn: Warn = lambda message: None) -> Any:
    """Optuna's journal file locally (safe for parallel processes, unlike SQLite), or a database URL. A damaged
    journal is moved aside (and said): the sweep then finds none, and rebuilds it from its trials' records."""
    import optuna

    if not sweep.local:
        try:
            return _rdb_storage(sweep.storage)
        except Exception as exc:  # a wrong URL, a missing driver, a server that refuses
            from trainlab.redaction import redact

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


SPEC_ATTR, BASE_ATTR, READY_ATTR = "sweep_spec", "base_config", "ready"
FINISHED_ATTR = "finished"  # set by the leader once the whole budget ran and the ranking is recorded


def open_study(sweep: Sweep, worker_index: int = 0, wait_ready: float = 60.0,
               warn: Warn = lambda message: None) -> optuna.Study:
    """Create the sweep's study (recording the spec and base config, queueing a grid once) or join it. A local
    study that lost trials its runs recorded (its journal emptied, deleted, cut or damaged) is rebuilt from them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = sweep.spec
    with asking(sweep):
        options = dict(study_name=sweep.sweep_id, storage=storage_for(sweep, warn), pruner=pruner_for(spec, sweep.base))
        records = trial_records(sweep.folder.parent, sweep.sweep_id, spec.metric, spec.seeds) if sweep.local else {}
        try:
            study = optuna.create_study(direction=spec.goal, **options)
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(**options)
            known = len(study.get_trials(deepcopy=False))
            if records and max(records) >= known:  # trials ran that the journal does not hold
                moved = Path(sweep.storage).with_name(f"{JOURNAL}.short-{time.strftime('%Y%m%d-%H%M%S')}")
                Path(sweep.storage).replace(moved)
                warn(f"sweep {sweep.sweep_id}: its journal holds {known} trial(s) but its runs recorded trial "
                     f"{max(records)}; moved it aside to {moved}, and the sweep is rebuilt from the runs' records")
                options["storage"] = storage_for(sweep, warn)
                study = optuna.create_study(direction=spec.goal, **options)
                _initialise(study, sweep, records, warn)
        else:
            _initialise(study, sweep, records, warn)
    deadline = time.monotonic() + wait_ready
    while not study.user_attrs.get(READY_ATTR):  # another machine is still queueing the grid
        if time.monotonic() > deadline:
            raise StudyError(f"sweep {sweep.sweep_id}: its study was created but never made ready (the process "
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


def _initialise(study: optuna.Study, sweep: Sweep, records: dict[int, TrialRecord], warn: Warn) -> None:
    """A new study: the spec and base config recorded, its trials rebuilt from their runs' records if any ran,
    and a grid's configurations not yet run queued once."""
    from trainlab.redaction import redact_mapping

    spec = sweep.spec
    study.set_user_attr(SPEC_ATTR, spec.source)
    study.set_user_attr(BASE_ATTR, redact_mapping(sweep.base))
    ran = rebuild_trials(study, sweep, records) if records else []
    if records:
        again = max(records) + 1 - len(ran)
        warn(f"sweep {sweep.sweep_id}: rebuilt its study from its trials' run records: {len(ran)} trial(s) that ran "
             f"to an end kept{f', {again} killed or unrecorded run again' if again else ''}")
    if spec.method == "grid":
        for values in grid(spec.params, spec.trial_cap):
            if values not in ran:
                study.enqueue_trial(values)
    study.set_user_attr(READY_ATTR, True)


def rebuild_trials(study: optuna.Study, sweep: Sweep, records: dict[int, TrialRecord]) -> list[dict[str, Any]]:
    """Trials 0..N of a new study, as their runs recorded them (numbers kept, so no run id is used twice):
    complete, pruned and failed ones as they ended; killed or unrecorded ones marked killed, to run again.
    Returns the (stored) parameters of the trials that ran to an end."""
    import optuna
    from optuna.trial import TrialState

    ended = ("complete", "pruned", "failed")
    swept = [p for p in sweep.spec.params if p.kind != "fixed"]
    ran = []
    for number in range(max(records) + 1):
        record = records.get(number)
        if record is not None and record.state == "running":
            raise StudyError(f"sweep {sweep.sweep_id}: its journal was lost while trial {number} still runs (pid "
                              f"{record.process.get('trainlab.pid', '?')}); let it end or stop it, then run the same "
                              "command again")
        trial = _ended_trial(record, swept) if record is not None and record.state in ended else None
        if trial is None or record is None:
            study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={KILLED: True}))
            continue
        trial.datetime_start = record.started or trial.datetime_start
        trial.datetime_complete = record.ended or trial.datetime_complete
        study.add_trial(trial)
        ran.append(trial.params)
    return ran


def _ended_trial(record: TrialRecord, swept: Sequence[Param]) -> optuna.trial.FrozenTrial | None:
    """A trial that ran to an end, as its runs recorded it; None if its parameters do not fit the sweep file."""
    import optuna
    from optuna.trial import TrialState

    if any(p.key not in record.params for p in swept):
        return None
    state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}[record.state]
    try:
        return optuna.trial.create_trial(
            state=state, value=statistics.fmean(record.values) if state == TrialState.COMPLETE else None,
            params={p.key: _encoded(p, [record.params[p.key]])[0] for p in swept},
            distributions={p.key: distribution(p) for p in swept}, intermediate_values=record.history,
            user_attrs={RESULT_ATTR: {"run_ids": record.run_ids, "seed_values": record.values, "test": record.test}})
    except ValueError:  # a value outside its distribution, no value for a complete trial
        return None


def distribution(param: Param) -> Any:
    """The Optuna distribution ``suggest`` draws ``param`` from."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.kind == "choice":
        return CategoricalDistribution(_encoded(param, param.choices))
    if param.kind == "int":
        return IntDistribution(int(param.low), int(param.high), step=int(param.q or 1))
    if param.q is not None and not param.log:
        return FloatDistribution(param.low, param.high, step=param.q)
    return FloatDistribution(param.low, param.high, log=param.log)


def existing_study(sweep: Sweep, warn: Warn = lambda message: None) -> optuna.Study | None:
    """The sweep's study if it was started already, else None. One whose journal is missing or damaged but whose
    trials left run records was started: it is rebuilt from them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sweep.local and not Path(sweep.storage).is_file() and not any(sweep.folder.parent.glob(f"{sweep.sweep_id}-t*")):
        return None
    storage = storage_for(sweep, warn)
    if sweep.sweep_id not in optuna.study.get_all_study_names(storage):
        if sweep.local and trial_records(sweep.folder.parent, sweep.sweep_id, sweep.spec.metric, sweep.spec.seeds):
            return open_study(sweep, warn=warn)
        return None
    return optuna.load_study(study_name=sweep.sweep_id, storage=storage)


def fresh_sweep(sweep: Sweep, cfg: Config, storage: str | None) -> Sweep:
    """The same sweep file and base config as a new sweep (``ID-2``, ``ID-3``, ...: the first with no study or
    folder yet), for starting afresh what would otherwise be resumed."""
    for n in range(2, 10_000):
        candidate = make_sweep(sweep.spec, cfg, storage, known_id=f"{sweep.sweep_id}-{n}")
        if not candidate.folder.exists() and existing_study(candidate) is None:
            return candidate
    raise ConfigError(f"sweep {sweep.sweep_id} has been started afresh 10,000 times; give the sweep file a new name")


def stored_sweep(sweep_id: str, storage: str,
                 warn: Warn = lambda message: None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sweep file and base config a study was created with (for `--resume SWEEP_ID`)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_sweep_id(sweep_id)
    probe = Sweep(sweep_id, None, {}, storage, Path(storage).parent)  # type: ignore[arg-type]
    if probe.local:
        recorded = _recorded_sweep(probe.folder)  # a journal lost: the sweep's own run recorded both at its start
        if not Path(storage).is_file():  # nothing is created for an id that names no sweep
            if recorded is not None:
                return recorded
            raise RunNotFound(f"no sweep {sweep_id!r}: {storage} does not exist; start it with `trainlab sweep "
                              "SWEEP.yaml`, or pass --storage where its study lives")
        storage_for(probe, warn)  # a damaged journal is moved aside first
        if not Path(storage).is_file() or sweep_id not in optuna.study.get_all_study_names(storage_for(probe)):
            if recorded is not None:
                return recorded
            raise RunNotFound(f"no sweep {sweep_id!r} in {storage}; start it with `trainlab sweep SWEEP.yaml`, or "
                              "pass --storage where it lives")
    try:
        attrs = optuna.load_study(study_name=sweep_id, storage=storage_for(probe)).user_attrs
    except KeyError:
        raise RunNotFound(f"no sweep {sweep_id!r} in {storage}; start it with `trainlab sweep SWEEP.yaml`, or "
                          "pass --storage where it lives") from None
    return attrs[SPEC_ATTR], attrs[BASE_ATTR]


def _recorded_sweep(folder: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The sweep file and base config as the sweep's run folder recorded them, if it did."""
    import yaml

    try:
        source = yaml.safe_load((folder / "sweep.yaml").read_text(encoding="utf-8"))
        base = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return (source, base) if isinstance(source, dict) and isinstance(base, dict) else None


def grid(params: Sequence[Param], limit: int | None = None) -> Iterator[dict[str, Any]]:
    """The grid's configurations in order (the last parameter varies fastest), the first ``limit`` of them: a grid
    is walked by index, never listed whole (a run_cap of 2 on a million points queues 2)."""
    swept = [p for p in params if p.kind != "fixed"]
    counts = [p.grid_count() for p in swept]
    total = math.prod(counts)
    for index in range(total if limit is None else min(total, limit)):
        values = {}
        for param, count in zip(reversed(swept), reversed(counts)):
            index, position = divmod(index, count)
            values[param.key] = _encoded(param, [param.grid_value(position)])[0]
        yield {p.key: values[p.key] for p in swept}


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


def suggest(trial: optuna.Trial, param: Param) -> Any:
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


# -- the ranking -------------------------------------------------------------------------------


def trial_rows(study: optuna.Study, spec: SweepSpec) -> list[TrialRow]:
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


def importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's parameter importances; empty when too few trials finished to tell."""
    import warnings

    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "too few trials": then the importances are equal, and say so
            return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


