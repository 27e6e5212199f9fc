"""Opening a sweep's Optuna study: created by the first process (the sweep file and base config recorded in it,
a grid's configurations queued once, its sampler and pruner chosen) or joined by the others; a local study that
lost trials its runs recorded (its journal emptied, deleted, cut or damaged) rebuilt from their run records;
a study found if the sweep was started already (``--new`` starts the next id afresh); and the sweep file and
base config read back from a study, or the sweep's run folder, for ``--resume SWEEP_ID``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.config import Config, validate_config
from trainlab.errors import ConfigError, RunNotFound, StudyError
from trainlab.experiments.search_space import distribution, encoded, grid
from trainlab.experiments.study_queue import RESULT_ATTR, asking
from trainlab.experiments.study_storage import JOURNAL, Sweep, Warn, make_sweep, storage_for
from trainlab.experiments.sweep_file import Param
from trainlab.experiments.sweep_spec import SweepSpec, check_sweep_id
from trainlab.experiments.trial_records import KILLED, TrialRecord, trial_records
from trainlab.redaction import redact_mapping

if TYPE_CHECKING:
    import optuna


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
            params={p.key: encoded(p, [record.params[p.key]])[0] for p in swept},
            distributions={p.key: distribution(p) for p in swept}, intermediate_values=record.history,
            user_attrs={RESULT_ATTR: {"run_ids": record.run_ids, "seed_values": record.values, "test": record.test}})
    except ValueError:  # a value outside its distribution, no value for a complete trial
        return None


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
