"""A sweep file's parameters in Optuna's terms: the value a trial draws for each (``suggest``), the distribution
it is drawn from (to rebuild a trial Optuna did not sample), a grid walked by index, and how a value is stored
(Optuna keeps str/int/float/bool/None: a whole architecture, a mapping, is stored as its JSON and decoded back).
Nothing here opens a study.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from trainlab.experiments.sweep_file import Param

if TYPE_CHECKING:
    import optuna


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
            values[param.key] = encoded(param, [param.grid_value(position)])[0]
        yield {p.key: values[p.key] for p in swept}


def encoded(param: Param, values: Sequence[Any]) -> list[Any]:
    """Optuna stores str/int/float/bool/None; a whole architecture (a mapping) is stored as its JSON."""
    return [v if v is None or isinstance(v, (str, int, float, bool)) else json.dumps(v, sort_keys=True)
            for v in values]


def decode(param: Param, stored: Any) -> Any:
    """A value as Optuna stored it -> the config value (a JSON string back to its mapping)."""
    if param.kind != "choice":
        return stored
    return dict(zip(encoded(param, param.choices), param.choices)).get(stored, stored)


def suggest(trial: optuna.Trial, param: Param) -> Any:
    """The trial's value for ``param`` (decoded: mappings come back as mappings)."""
    if param.kind == "fixed":
        return param.choices[0]
    if param.kind == "choice":
        return decode(param, trial.suggest_categorical(param.key, encoded(param, param.choices)))
    if param.kind == "int":
        return trial.suggest_int(param.key, int(param.low), int(param.high), step=int(param.q or 1))
    if param.q is not None and not param.log:
        return trial.suggest_float(param.key, param.low, param.high, step=param.q)
    value = trial.suggest_float(param.key, param.low, param.high, log=param.log)
    return round(round(value / param.q) * param.q, 12) if param.q else value


def distribution(param: Param) -> Any:
    """The Optuna distribution ``suggest`` draws ``param`` from."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.kind == "choice":
        return CategoricalDistribution(encoded(param, param.choices))
    if param.kind == "int":
        return IntDistribution(int(param.low), int(param.high), step=int(param.q or 1))
    if param.q is not None and not param.log:
        return FloatDistribution(param.low, param.high, step=param.q)
    return FloatDistribution(param.low, param.high, log=param.log)
