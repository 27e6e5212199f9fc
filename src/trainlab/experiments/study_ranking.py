"""The ranking a sweep's study holds: a row per configuration so far (its parameters decoded, objective, seeds'
values, epochs, runs and test metrics beside), completed ones best first on the validation objective, then
running, pruned, failed and killed ones; the best so far; and Optuna's parameter importances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainlab.experiments.search_space import decode
from trainlab.experiments.study_queue import RESULT_ATTR, UNUSED
from trainlab.experiments.sweep_spec import SweepSpec
from trainlab.experiments.trial_records import KILLED

if TYPE_CHECKING:
    import optuna


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
