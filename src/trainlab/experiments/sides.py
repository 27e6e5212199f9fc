"""The sides of a comparison: a run, or the runs of one config that differ only in their seed.

    a run reference (run id, run folder, SWEEP#N, a seed sweep) --Record (runs.py)--> side_of;
    an MLflow filter --> side_from_filter (one seed group; several configs only with --pool)
        -> only finished training runs count (not pruned trials, evaluations or comparisons)
        -> shared_split: refuse sides whose test splits differ (a paired test on other examples means nothing)
        -> saved_predictions: every model's saved test predictions, checked to hold the same examples

A pair of sides is compared in ``pair.py``, many in ``ranking.py``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainlab.errors import ArtifactNotFound, ConfigError
from trainlab.experiments.significance import MIN_SEEDS
from trainlab.tracking.base import PARAMS_TAG, SWEEP_TAG

if TYPE_CHECKING:
    from trainlab.runs import Predictions, Record, RunRow

# params that name, place or duplicate a config, or say what happens after the run, rather than change what is trained
NOT_CONFIG = frozenset({"name", "output_dir", "data.data_dir", "data.download", "data.mirror", "seed", "device",
                        "threads", "model", "dataset", "optimizer", "lr", "batch_size", "epochs", "report",
                        "register_as"})
# what must be equal on every side for the sides' test examples to be the same ones
SPLIT_KEYS = {"dataset": ("tags", "dataset"), "data fingerprint": ("tags", "data_fingerprint"),
              "split seed": ("params", "data.split_seed"), "test fraction": ("params", "data.test_fraction")}


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a run, or the runs of one config that differ only in their seed."""

    name: str  # what the user gave, or a sweep trial's name
    runs: list[RunRow]
    params: dict[str, str] = field(default_factory=dict)  # what a sweep trial set, for its label
    pooled: dict[str, str] = field(default_factory=dict)  # config keys that differ among the runs (--pool): values

    @property
    def single(self) -> bool:
        return len(self.runs) == 1

    @property
    def seeds(self) -> list[str]:
        return [r.params.get("seed", r.tags.get("seed", "")) for r in self.runs]

    def values(self, metric: str) -> list[float]:
        return [r.metrics[metric] for r in self.runs if metric in r.metrics and not math.isnan(r.metrics[metric])]

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "runs": [r.run_id for r in self.runs], "mlflow_ids": [r.mlflow_id for r in self.runs],
                "seeds": self.seeds, "experiment": self.runs[0].experiment,
                **({"params": self.params} if self.params else {}), **({"pooled": self.pooled} if self.pooled else {})}


# -- reading a side -----------------------------------------------------------------------------------------


def side_of(record: Record, ref: str) -> Side:
    """A run, a sweep trial ``SWEEP#N`` (its seed repeats), or a seed sweep (one config, several seeds)."""
    runs = finished(record.runs(ref), ref)
    configs = {config_key(r) for r in runs}
    if len(configs) > 1:
        raise ConfigError(f"{ref!r} holds {len(configs)} different configurations, not seed repeats of one; compare "
                          f"it alone to rank them (`trainlab compare {ref}`), or pick one with --a/--b FILTER")
    return Side(ref, runs, trial_params(runs[0]) if "#" in ref else {})


def trial_params(row: RunRow) -> dict[str, str]:
    """What a sweep set for this run's trial ({} for a run outside a sweep)."""
    return json.loads(row.tags.get(PARAMS_TAG, "{}"))


def side_from_filter(record: Record, filter_string: str, *, option: str = "--a", pool: bool = False) -> Side:
    """The runs an MLflow filter matches as one seed group; runs of several configs are refused unless ``pool``."""
    runs = training_runs(record.search(filter_string))
    if not runs:
        raise ConfigError(f"no finished training run matches {filter_string!r}; check it with "
                          f"`trainlab runs --filter \"{filter_string}\"`")
    runs = finished(runs, filter_string)
    differing = differing_config(runs)
    if differing and not pool:
        key, values = next(iter(differing.items()))
        seen = "; ".join(f"{k}: {v}" for k, v in differing.items())
        raise ConfigError(f"{option} {filter_string!r} matches runs of {len({config_key(r) for r in runs})} "
                          f"configurations, not seed repeats of one ({seen}); narrow the filter (e.g. add "
                          f"\"and params.`{key}` = '{values.split(', ')[0]}'\") or pass --pool to compare them as "
                          "one group")
    by_seed: dict[str, list[str]] = {}
    for r in runs:
        by_seed.setdefault(r.params.get("seed", r.tags.get("seed", "?")), []).append(r.run_id)
    repeated = {seed: ids for seed, ids in by_seed.items() if len(ids) > 1}
    if repeated and not pool:
        seed, ids = next(iter(repeated.items()))
        sweeps = sorted({r.tags[SWEEP_TAG] for r in runs if SWEEP_TAG in r.tags})
        narrow = (f"e.g. add \"and tags.sweep = '{sweeps[0]}'\"" if len(sweeps) > 1 else "e.g. by tags.sweep or "
                  "attributes.start_time")
        raise ConfigError(f"{option} {filter_string!r} matches {len(ids)} runs of seed {seed} ({', '.join(ids[:3])}): "
                          "a seed group holds one run per seed, and repeats of a seed are not independent draws; "
                          f"narrow the filter ({narrow}) or pass --pool to take them all")
    return Side(filter_string, runs, pooled=differing)


def differing_config(runs: Sequence[RunRow]) -> dict[str, str]:
    """Config keys (seed aside) whose values differ among ``runs``: key -> the values seen."""
    keys = sorted({k for r in runs for k, _ in config_key(r)})
    return {k: values_of(runs, "params", k) for k in keys if len({r.params.get(k) for r in runs}) > 1}


def training_runs(rows: Sequence[RunRow]) -> list[RunRow]:
    """Runs that trained a model (not sweeps' parents, evaluations or comparisons)."""
    return [r for r in rows if r.tags.get("job", "train") in ("train", "trial")]


def finished(rows: Sequence[RunRow], ref: str) -> list[RunRow]:
    """Only finished runs hold test results; a single unfinished run is an error, others are left out."""
    done = [r for r in rows if r.status == "FINISHED" and r.tags.get("stop_reason") != "pruned"]
    if not done:
        states = ", ".join(sorted({("pruned" if r.tags.get("stop_reason") == "pruned" else r.status.lower())
                                   for r in rows})) or "none"
        raise ConfigError(f"{ref!r} has no finished run to compare (found: {states}); finish it first (`trainlab "
                          "train --resume RUN`) or pick another")
    return done


def config_key(row: RunRow) -> tuple[tuple[str, str], ...]:
    """What was trained, seed aside: runs with equal keys are seed repeats of one config."""
    return tuple(sorted((k, v) for k, v in row.params.items() if k not in NOT_CONFIG and not k.startswith("tracking.")))


def values_of(rows: Sequence[RunRow], kind: str, key: str) -> str:
    found = sorted({getattr(r, kind).get(key, "(unset)") for r in rows}, key=lambda v: (len(v), v))
    return ", ".join(found)


# -- seeds --------------------------------------------------------------------------------------------------


def seeds_of(side: Side, metric: str) -> list[str]:
    return [s for s, r in zip(side.seeds, side.runs) if metric in r.metrics and not math.isnan(r.metrics[metric])]


def too_few_seeds(sides: Sequence[Side], metric: str) -> list[Side]:
    """The sides with fewer than MIN_SEEDS runs recording ``metric``."""
    return [s for s in sides if len(s.values(metric)) < MIN_SEEDS]


def seed_repeats_spread(record: Record, rows: Sequence[RunRow], metric: str) -> tuple[float | None, int, int]:
    """(pooled std, runs, configs) of ``metric`` over the recorded seed repeats of each row's config."""
    groups: list[list[float]] = []
    for row in rows:
        fingerprint, arch = row.tags.get("data_fingerprint", ""), row.params.get("model.arch", "")
        if "'" in fingerprint + arch:
            continue
        candidates = training_runs(record.search(f"tags.data_fingerprint = '{fingerprint}' and "
                                                 f"params.`model.arch` = '{arch}'", limit=2000))
        values = [r.metrics[metric] for r in candidates if config_key(r) == config_key(row) and r.status == "FINISHED"
                  and metric in r.metrics and not math.isnan(r.metrics[metric])]
        if len(values) >= 2 and not any(values == g for g in groups):
            groups.append(values)
    if not groups:
        return None, 0, 0
    pooled = math.sqrt(sum((len(g) - 1) * statistics.variance(g) for g in groups) / sum(len(g) - 1 for g in groups))
    return pooled, sum(len(g) for g in groups), len(groups)


# -- the same test examples on every side -------------------------------------------------------------------


def shared_split(sides: Sequence[Side]) -> dict[str, Any]:
    """The test split every run was evaluated on; one line naming the difference when they are not the same."""
    seen: dict[str, tuple[str, str]] = {}
    for side in sides:
        for row in side.runs:
            for what, (kind, key) in SPLIT_KEYS.items():
                value = getattr(row, kind).get(key)
                if value is None:
                    raise ConfigError(f"run {row.run_id} records no {what}, so its test split cannot be shown to be "
                                      "the one of the other runs; compare runs trained by `trainlab train`")
                if what in seen and seen[what][1] != value:
                    raise ConfigError(f"the runs were tested on different test splits: {what} is {seen[what][1]!r} "
                                      f"for run {seen[what][0]} but {value!r} for run {row.run_id}; a paired test "
                                      "needs the same test examples on both sides")
                seen.setdefault(what, (row.run_id, value))
    return {what: value for what, (_, value) in seen.items()}


def check_same_examples(split: dict[str, Any], named: Sequence[tuple[str, Predictions]]) -> None:
    """The saved predictions hold the same examples, in the same order, with the same labels."""
    first_name, first = named[0]
    for name, other in named[1:]:
        if len(other.y_true) != len(first.y_true) or other.class_names != first.class_names or (
                other.y_true != first.y_true).any():
            raise ConfigError(f"runs {first_name} and {name} record the same test split but their saved predictions "
                              f"differ ({len(first.y_true)} vs {len(other.y_true)} examples or other labels); the data "
                              "changed between them, so a paired test is not possible")
    split["test examples"] = len(first.y_true)
    split["classes"] = len(first.class_names)


def saved_predictions(record: Record, sides: Sequence[Side], split: dict[str, Any],
                      cache: dict[str, Predictions] | None = None,
                      progress: Callable[[], None] = lambda: None) -> list[list[Predictions]] | None:
    """Every run's saved test predictions, side by side, checked to hold the same examples; None if a run has none."""
    cache = {} if cache is None else cache
    try:
        for side in sides:
            for r in side.runs:
                if r.mlflow_id not in cache:
                    cache[r.mlflow_id] = record.predictions(r)
                    progress()
    except ArtifactNotFound:  # a run without a prediction table (an older or foreign run): the seeds' metrics only
        return None
    check_same_examples(split, [(r.run_id, cache[r.mlflow_id]) for side in sides for r in side.runs])
    return [[cache[r.mlflow_id] for r in side.runs] for side in sides]
