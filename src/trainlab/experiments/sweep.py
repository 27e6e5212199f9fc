"""Running a sweep's trials: each an ordinary trainlab run, trained in the worker process.

    each trial: ask the study -> config -> `seeds` runs in this process -> tell (mean objective, or pruned)

Trials run in the worker process, so the dataset, the imported libraries and the
tracking clients are loaded once per worker, not once per trial; a trial's record
ends in the background while the next trial starts. Selection reads only the
validation metric; the test metrics are reported beside it. The study itself is
``study_storage.py`` (where it lives), ``study_open.py`` (creating, joining,
rebuilding it), ``study_queue.py`` (the queue and budget), ``search_space.py``
(the parameters in Optuna's terms) and ``study_ranking.py`` (its ranking).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainlab import failpoints
from trainlab.config import Config, validate_config
from trainlab.errors import StorageError, TrainingError
from trainlab.experiments.search_space import suggest
from trainlab.experiments.study_queue import (
    RESULT_ATTR,
    UNUSED,
    WORKER_ATTR,
    asking,
    budget_left,
    from_queue,
    reclaim_dead_trials,
    requeue_killed,
)
from trainlab.experiments.study_ranking import TrialRow
from trainlab.experiments.study_storage import Sweep, Warn
from trainlab.experiments.sweep_spec import apply_params
from trainlab.experiments.trial_records import KILLED, TrialRecord, trial_records
from trainlab.tracking.base import PARAMS_TAG, SEED_TAG, SWEEP_TAG, TRIAL_TAG, says_disk_full
from trainlab.tracking.mlflow_store import mark_killed
from trainlab.tracking.process import this_process
from trainlab.tracking.run import KILL_WAIT_S
from trainlab.train import TrainCallbacks

if TYPE_CHECKING:
    import optuna

    from trainlab.distributed import Ranks
    from trainlab.experiment import RunOutcome

@dataclass
class _Trained:
    """A trial whose runs have trained; their records may still be ending."""

    trial: optuna.Trial
    values: dict[str, Any]
    outcomes: list[RunOutcome]
    started: float


class SweepCallbacks(TrainCallbacks):
    """What a sweep tells its user while it runs; the defaults do nothing."""

    def on_trial_start(self, number: int, params: dict[str, Any], seed: int) -> None: ...
    def on_trial_end(self, row: TrialRow) -> None: ...


# -- running trials ----------------------------------------------------------------------------


class _Pruning(TrainCallbacks):
    """Reports the monitored metric after each epoch; stops the run when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str, progress: TrainCallbacks | None) -> None:
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
    raw["report"] = False  # a page per trial on demand (`trainlab report RUN`): trials stay cheap
    raw["register_as"] = None  # a sweep registers its best trial's run once, when it has ended (not every trial)
    if threads:
        raw["threads"] = threads
    return validate_config(raw)


class Worker:
    """Runs trials in this process until the budget is spent; the dataset and clients stay loaded."""

    def __init__(self, sweep: Sweep, parent_mlflow_id: str | None, *, threads: int | None = None,
                 callbacks: SweepCallbacks | None = None, warn: Warn | None = None, ranks: Ranks | None = None) -> None:
        self.sweep, self.parent, self.threads = sweep, parent_mlflow_id, threads
        self.ranks = ranks  # each trial trains on these processes (this one leads them)
        self.callbacks = callbacks or SweepCallbacks()
        self.warn = warn or (lambda message: None)
        self._datasets: dict[str, Any] = {}
        self._settle_errors: list[BaseException] = []  # raised in the worker's thread, not printed by a settling one

    def run(self, study: optuna.Study) -> int:
        """Trials until the budget is spent; returns how many this worker ran.

        A trial's record ends (backends, then run folder) in the background while the next trial starts;
        the study is told the trial's result the moment its record has ended (not before: a kill in
        between re-runs the trial rather than leaving a finished trial with an unfinished record).
        """
        from optuna.trial import TrialState

        records = trial_records(self.sweep.folder.parent, self.sweep.sweep_id, self.sweep.spec.metric,
                                self.sweep.spec.seeds) if self.sweep.local else None
        self._retire_killed_attempts(study, reclaim_dead_trials(study, self.warn, records), records)
        ran = 0
        settling: list[threading.Thread] = []
        try:
            while True:
                self._raise_settle_error()
                with asking(self.sweep):
                    if not budget_left(study, self.sweep.spec):
                        break
                    trial = study.ask()
                    trial.set_user_attr(WORKER_ATTR, this_process())
                failpoints.reached("trial-asked")
                if self.sweep.spec.method == "grid" and not from_queue(study, trial.number):
                    # another machine took the last queued configuration between our check and our ask
                    trial.set_user_attr(UNUSED, True)
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                trained = self.run_trial(study, trial)
                ran += 1
                if trained is not None:
                    settling = [t for t in settling if t.is_alive()]
                    settling.append(threading.Thread(target=self._settle_in_background, args=(study, trained),
                                                     name=f"trainlab-trial-{trial.number}-settle", daemon=True))
                    settling[-1].start()
        except BaseException:
            for thread in settling:  # interrupted: a short wait, else the trial is re-run as killed
                thread.join(KILL_WAIT_S)
            raise
        for thread in settling:
            thread.join()
        self._raise_settle_error()
        return ran

    def _retire_killed_attempts(self, study: optuna.Study, killed: list[TrialRecord],
                                records: dict[int, TrialRecord] | None) -> None:
        """The runs of attempts the sweep threw away (killed, or their record cut by a full disk) marked killed in
        MLflow and in their folders: neither may show a running or finished run of a configuration trained again."""
        if records is not None:  # local: every killed trial's runs, until their folders say killed
            numbers = {t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get(KILLED)}
            killed = [r for n, r in records.items() if n in numbers and {"running", "finished"} & set(r.recorded)]
        run_ids = [run_id for record in killed for run_id in record.run_ids]
        if not run_ids:
            return
        why = "the sweep trains this configuration again: this attempt was killed, or its record cut"
        tracking = validate_config(self.sweep.base).tracking
        if "mlflow" in tracking.trackers:

            try:
                mark_killed(tracking.mlflow_uri, run_ids, why)
            except Exception as exc:  # a store that cannot be reached: said, tried again next time
                self.warn(f"could not mark the killed trial run(s) {', '.join(run_ids)} killed in MLflow: {exc}")
                return
        if records is not None:
            from trainlab.tracking.folder_backend import mark_run_killed

            for run_id in run_ids:
                mark_run_killed(self.sweep.folder.parent / run_id, why)

    def _settle_in_background(self, study: optuna.Study, trained: _Trained) -> None:
        try:
            self.settle(study, trained)
        except BaseException as exc:  # the study could not be told (a full disk): the trial runs again
            self._settle_errors.append(exc)

    def _raise_settle_error(self) -> None:
        if self._settle_errors:
            raise self._settle_errors[0]

    def run_trial(self, study: optuna.Study, trial: optuna.Trial) -> _Trained | None:
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
                        PARAMS_TAG: json.dumps(values, default=str)[:5000],  # in the sweep file's key order
                        **({"mlflow.parentRunId": self.parent} if self.parent else {})}
                # only the first seed reports to the pruner: a pruned configuration skips its other seeds
                callbacks = _Pruning(trial, spec.metric, self.callbacks) if index == 0 else self.callbacks
                outcome = run_experiment(cfg.model_copy(update={"seed": seed}), callbacks=callbacks,
                                         dataset=self._dataset(cfg), run_id=run_id, warn=self.warn, job="trial",
                                         group=self.sweep.sweep_id, tags=tags, wait_for_trackers=False,
                                         end_in_background=True, ranks=self.ranks)
                trained.outcomes.append(outcome)
                if outcome.result.stop_reason == "pruned":
                    break
        except KeyboardInterrupt:
            requeue_killed(study, trial._trial_id, trial.number, trial.params)
            raise
        except StorageError:  # a full disk: a fault, not the configuration's; the same command trains it again
            with contextlib.suppress(Exception):  # the journal's disk may be the full one: then it is reclaimed
                requeue_killed(study, trial._trial_id, trial.number, trial.params)
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
        except BaseException as exc:  # a broken sweep (a config, a bug): the trial failed, and it is not re-run
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:1000])
            study.tell(trial, state=TrialState.FAIL)
            raise
        return trained

    def settle(self, study: optuna.Study, trained: _Trained) -> TrialRow:
        """Once the trial's runs are recorded to the end: tell the study its objective (or that it was pruned)."""
        from optuna.trial import TrialState

        for outcome in trained.outcomes:
            outcome.wait_recorded()
        trial, outcomes, spec = trained.trial, trained.outcomes, self.sweep.spec
        cut = [f"{name} ({o.run_id})" for o in outcomes for name, why in o.tracking_failures.items()
               if says_disk_full(why)]
        if cut:  # its record is not whole: a fault, so it is trained again, not told complete
            from trainlab.experiment import TRIAL_DISK_ADVICE  # torch's module, imported already by the trial

            with contextlib.suppress(Exception):  # the journal's disk may be the full one: then it is reclaimed
                requeue_killed(study, trial._trial_id, trial.number, trial.params)
            raise StorageError(f"no space left on device while recording trial {trial.number} ({', '.join(cut)}); "
                               f"{TRIAL_DISK_ADVICE}")
        scores = [o.result.best_value for o in outcomes]
        test = {k: statistics.fmean(o.test.metrics[k] for o in outcomes)
                for k in ("accuracy", "macro_f1", "auroc", "log_loss")}
        trial.set_user_attr(RESULT_ATTR, {"run_ids": [o.run_id for o in outcomes], "seed_values": scores, "test": test})
        pruned = outcomes[-1].result.stop_reason == "pruned"
        if pruned:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, statistics.fmean(scores))
        failpoints.reached("trial-told")
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


def threads_per_worker(workers: int) -> int | None:
    """Oversubscribed torch threads on a small CPU are many times slower: the cores are shared out."""
    return max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
