"""Many candidates ranked on one metric, each tested against the best, with Holm's correction.

    a sweep (its finished trials, each with its seed repeats), several runs, or a filter
        -> candidates labelled by what differs among them
        -> single runs: paired tests on the shared test split; seed groups: tests over seeds, or with
           fewer than MIN_SEEDS runs a side, paired tests on every model's saved predictions
        -> Holm-adjusted p-values; "indistinguishable from the best" at alpha
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from trainlab.errors import ConfigError
from trainlab.experiments.seed_groups import group_difference
from trainlab.experiments.sides import (
    NOT_CONFIG,
    Side,
    check_same_examples,
    finished,
    saved_predictions,
    seeds_of,
    shared_split,
    too_few_seeds,
    training_runs,
    trial_params,
    values_of,
)
from trainlab.experiments.significance import (
    ALPHA,
    METRICS,
    RESAMPLES,
    Difference,
    GroupDifference,
    holm,
    lower_is_better,
    paired_differences,
)
from trainlab.experiments.wording import few_seeds_note, label, metric_name, predictions_note
from trainlab.tracking.base import TRIAL_TAG

if TYPE_CHECKING:
    from trainlab.runs import Record, RunRow


@dataclass(frozen=True)
class Ranked:
    side: Side
    mean: float
    std: float
    against_best: Difference | None  # None for the best itself
    p_holm: float | None
    indistinguishable: bool  # from the best, at alpha after Holm's correction (the best itself: True)
    too_few_seeds: bool = False  # not told apart by a t-test over fewer than MIN_SEEDS seeds: no verdict


@dataclass
class Ranking:
    """Many candidates ranked on one metric, each tested against the best with Holm's correction."""

    metric: str
    alpha: float
    split: dict[str, Any]
    rows: list[Ranked]
    verdict: str
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "ranking", "metric": self.metric, "alpha": self.alpha, "test_split": self.split,
                "rows": [{**r.side.summary(), "mean": r.mean, "std": r.std,
                          "against_best": asdict(r.against_best) if r.against_best else None,
                          "p_holm": r.p_holm, "indistinguishable_from_best": r.indistinguishable,
                          "too_few_seeds": r.too_few_seeds} for r in self.rows],
                "verdict": self.verdict, "notes": self.notes}


def candidates_of(record: Record, refs: Sequence[str], filter_string: str | None) -> tuple[list[Side], list[str]]:
    """A sweep's completed trials (each with all its seed repeats), or each of the runs given or matched; and
    notes on what was left out."""
    if filter_string:
        return [Side(r.run_id, [r]) for r in finished(training_runs(record.search(filter_string)), filter_string)], []
    if len(refs) == 1:
        runs = training_runs(record.runs(refs[0]))
        finished(runs, refs[0])  # one line when nothing finished
        trials: dict[str, list[RunRow]] = {}
        for r in runs:
            trials.setdefault(r.tags.get(TRIAL_TAG, r.run_id), []).append(r)
        seeds = max(len(done_runs(rows)) for rows in trials.values())
        complete = {t: rows for t, rows in trials.items() if len(done_runs(rows)) == len(rows) == seeds}
        left_out = sorted(set(trials) - set(complete), key=lambda t: int(t) if t.isdigit() else 0)
        if len(trials) < 2:
            raise ConfigError(f"{refs[0]!r} is a single run; give two runs to compare (`trainlab compare A B`), or a "
                              "sweep or several runs to rank")
        notes = [f"Left out {len(left_out)} trial(s) whose seeds did not all finish (killed, failed, pruned or still "
                 f"running: {', '.join(f'#{t}' for t in left_out)}); a killed trial was run again as another."
                 ] if left_out else []
        return [Side(f"{refs[0]}#{trial}", rows, trial_params(rows[0]))
                for trial, rows in sorted(complete.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)], notes
    return [Side(ref, finished(record.runs(ref), ref)) for ref in refs], []


def done_runs(rows: Sequence[RunRow]) -> list[RunRow]:
    """The runs that finished training and were not pruned."""
    return [r for r in rows if r.status == "FINISHED" and r.tags.get("stop_reason") != "pruned"]


def distinguishing(sides: Sequence[Side]) -> list[dict[str, str]]:
    """For each candidate, the config values that differ among the candidates (a sweep's trials: what it set)."""
    if all(s.params for s in sides):
        return [dict(s.params) for s in sides]
    keys = [k for k in sorted({k for s in sides for r in s.runs for k in r.params})
            if (k not in NOT_CONFIG or k == "seed") and not k.startswith("tracking.")
            and len({values_of(s.runs, "params", k) for s in sides}) > 1]
    return [{k: values_of(s.runs, "params", k) for k in keys} for s in sides]


def rank_many(record: Record, sides: Sequence[Side], *, metric: str = "test_accuracy", alpha: float = ALPHA,
              resamples: int = RESAMPLES, seed: int = 0,
              progress: Callable[[int, int], None] = lambda done, total: None) -> Ranking:
    """Rank on ``metric`` and test each candidate against the best (Holm over the m - 1 tests)."""
    metric = metric_name(metric)
    split = shared_split(sides)
    usable = [s for s in sides if s.values(metric)]
    if len(usable) < 2:
        raise ConfigError(f"fewer than two candidates record {metric!r}; nothing to rank")
    worse_first = lower_is_better(metric)
    ordered = sorted(usable, key=lambda s: statistics.fmean(s.values(metric)) * (1 if worse_first else -1))
    ordered = [Side(s.name, s.runs, shown) for s, shown in zip(ordered, distinguishing(ordered))]
    best = ordered[0]
    per_run = all(s.single for s in ordered)
    notes = []
    if per_run:
        if metric.removeprefix("test_") not in METRICS:
            raise ConfigError(f"--metric {metric!r}: single runs are compared on their test predictions, which give "
                              f"{', '.join('test_' + m for m in METRICS)}")
        predictions = []
        for i, s in enumerate(ordered):
            predictions.append(record.predictions(s.runs[0]))
            progress(i + 1, len(ordered))
        check_same_examples(split, [(s.runs[0].run_id, p) for s, p in zip(ordered, predictions)])
        bare = metric.removeprefix("test_")
        tests = [paired_differences(predictions[0].y_true, predictions[0].probs, p.probs, resamples=resamples,
                                    seed=seed, metrics=(bare,))[bare] for p in predictions[1:]]
        tests = [Difference(**{**asdict(d), "metric": metric}) for d in tests]
        notes.append("One run per candidate: each is tested against the best on the same test examples; this ranks "
                     "these trained models, not their configs.")
    else:
        tests = seed_group_tests(record, ordered, metric, split, resamples, seed, progress, notes)
    adjusted = holm([t.p_value for t in tests]) if tests else []
    rows = [Ranked(best, statistics.fmean(best.values(metric)), spread(best.values(metric)), None, None, True)]
    rows += [Ranked(s, statistics.fmean(s.values(metric)), spread(s.values(metric)), t, q, not q < alpha,
                    not q < alpha and isinstance(t, GroupDifference) and t.too_few)
             for s, t, q in zip(ordered[1:], tests, adjusted)]
    untold = sum(r.too_few_seeds for r in rows[1:])
    tied = sum(r.indistinguishable for r in rows[1:]) - untold
    if len(tests) == 1:
        other = "too close to tell with this few seeds" if untold else "not distinguishable from it" if tied else "worse"
        verdict = f"{best.name} is best on {label(metric)}; the other is {other} at the {alpha:g} level"
    else:
        verdict = (f"{best.name} is best on {label(metric)}; {tied} of the other {len(tests)} "
                   f"{'is' if tied == 1 else 'are'} not distinguishable from it at the {alpha:g} level after Holm's "
                   f"correction for {len(tests)} comparisons"
                   + (f", and {untold} cannot be told apart from it with fewer than 3 seeds" if untold else ""))
    few = {id(s) for s in too_few_seeds(ordered, metric)}
    if not per_run and any(r.indistinguishable and not r.too_few_seeds and {id(best), id(r.side)} & few
                           for r in rows[1:]):
        verdict += "; too few seeds to tell whether the configs differ"
    if len(sides) > len(usable):
        notes.append(f"{len(sides) - len(usable)} candidate(s) record no {metric} and are left out.")
    return Ranking(metric, alpha, split, rows, verdict, notes)


def seed_group_tests(record: Record, ordered: Sequence[Side], metric: str, split: dict[str, Any], resamples: int,
                     seed: int, progress: Callable[[int, int], None], notes: list[str]) -> list[Difference]:
    """Each seed group against the best (``ordered[0]``): over the seeds, or, where a side has fewer than MIN_SEEDS
    runs, on the saved predictions of every model (each read once); the notes say which and why."""
    best, bare = ordered[0], metric.removeprefix("test_")
    few = {id(s) for s in too_few_seeds(ordered, metric)}
    short = [s for s in ordered[1:] if {id(best), id(s)} & few] if bare in METRICS else []
    total = sum(len(s.runs) for s in ([best] if short else []) + short)
    cache: dict[str, Any] = {}
    tests: list[Difference] = []
    on_predictions = 0
    for s in ordered[1:]:
        saved = None
        if any(s is x for x in short):
            saved = saved_predictions(record, [best, s], split, cache, lambda: progress(len(cache), total))
        if saved is None:
            tests.append(group_difference(metric, best.values(metric), s.values(metric), seeds_of(best, metric),
                                          seeds_of(s, metric)))
            continue
        on_predictions += 1
        pa, pb = saved
        found = paired_differences(pa[0].y_true, [p.probs for p in pa], [p.probs for p in pb], resamples=resamples,
                                   seed=seed, metrics=(bare,))[bare]
        tests.append(Difference(**{**asdict(found), "metric": metric}))
    if few:
        notes.append(few_seeds_note("every candidate has" if len(few) == len(ordered) else
                                    f"{len(few)} of the {len(ordered)} candidates have"))
    if on_predictions:
        notes.append(predictions_note(int(split["test examples"]), "the models" if on_predictions == len(tests) else
                                      f"in the {on_predictions} comparisons with such a candidate, the models"))
    return tests


def spread(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else math.nan
