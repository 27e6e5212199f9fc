"""Compare two runs, or two groups of seed repeats: is B really better than A? (Many: ``ranking.py``.)

    references --Record (runs.py)--> sides: one run, or the seed repeats of one config
        -> refuse sides whose test splits differ (a paired test on other examples means nothing)
        -> the config diff and the environment diff that matters
        -> significance.py: a run a side -> paired tests on the saved predictions;
                            seed groups -> tests over the seeds' recorded test metrics;
                            fewer than MIN_SEEDS runs a side -> paired tests on every model's saved
                            predictions (a t-test over 1 or 2 seeds is not meaningful)
        -> one verdict sentence; ``record_comparison`` keeps it as a run of job "compare"

Nothing here prints; ``cli/compare.py`` shows what it returns.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from trainlab.errors import ArtifactNotFound, ConfigError
from trainlab.experiments.seed_groups import group_difference, seed_spread_from_disagreement, seeds_needed
from trainlab.experiments.significance import (
    METRICS,
    MIN_SEEDS,
    RESAMPLES,
    Difference,
    GroupDifference,
    lower_is_better,
    paired_differences,
)
from trainlab.tracking.base import SWEEP_TAG

if TYPE_CHECKING:
    from trainlab.experiments.ranking import Ranking
    from trainlab.runs import Predictions, Record, RunRow

ALPHA = 0.05
# params that name, place or duplicate a config, or say what happens after the run, rather than change what is trained
NOT_CONFIG = frozenset({"name", "output_dir", "data.data_dir", "data.download", "data.mirror", "seed", "device",
                        "threads", "model", "dataset", "optimizer", "lr", "batch_size", "epochs", "report",
                        "register_as"})
# what must be equal on every side for the sides' test examples to be the same ones
SPLIT_KEYS = {"dataset": ("tags", "dataset"), "data fingerprint": ("tags", "data_fingerprint"),
              "split seed": ("params", "data.split_seed"), "test fraction": ("params", "data.test_fraction")}
ENVIRONMENT_TAGS = {"trainlab": ("tags", "trainlab_version"), "git commit": ("tags", "git_commit"),
                    "dirty": ("tags", "git_dirty"), "threads": ("params", "threads"), "device": ("params", "device")}
ENVIRONMENT_FILE = {"python": "python", "torch": "torch", "cpu": "cpu_model", "cpu capability": "cpu_capability"}
LABELS = {"accuracy": "test accuracy", "macro_f1": "macro F1", "auroc": "AUROC", "log_loss": "log loss"}


def label(metric: str) -> str:
    return LABELS.get(metric.removeprefix("test_"), metric)


def amount(metric: str, value: float, signed: bool = True, unit: bool = True) -> str:
    """A difference in the metric's own words: points for shares (0.008 -> +0.80 points), else the value."""
    if math.isnan(value):
        return "n/a"
    sign = "+" if signed else ""
    if lower_is_better(metric):
        return f"{value:{sign}.4f}"
    return f"{value * 100:{sign}.2f}" + (" points" if unit else "")


def interval(metric: str, low: float, high: float) -> str:
    """'-0.40 to +1.20 points'."""
    return f"{amount(metric, low, unit=False)} to {amount(metric, high)}"


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


@dataclass
class Comparison:
    """A against B: what differs, each metric's difference and significance, the verdict."""

    a: Side
    b: Side
    metric: str  # the verdict's
    alpha: float
    split: dict[str, Any]
    config_diff: dict[str, list[str]]  # key -> [A's value(s), B's value(s)]
    environment_diff: dict[str, list[str]]
    differences: list[Difference]
    outcome: str  # better / worse / indistinguishable (B against A)
    verdict: str
    notes: list[str]
    seed_std: float | None = None
    seed_std_source: str = ""
    seeds_needed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "pair", "a": self.a.summary(), "b": self.b.summary(), "metric": self.metric, "alpha": self.alpha,
                "test_split": self.split, "config_diff": self.config_diff, "environment_diff": self.environment_diff,
                "metrics": [asdict(d) for d in self.differences], "outcome": self.outcome, "verdict": self.verdict,
                "notes": self.notes, "seed_std": self.seed_std, "seed_std_source": self.seed_std_source,
                "seeds_needed": self.seeds_needed}


# -- sides --------------------------------------------------------------------------------------------


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
    import json

    from trainlab.tracking.base import PARAMS_TAG

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


# -- checks and diffs -----------------------------------------------------------------------------------


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


def values_of(rows: Sequence[RunRow], kind: str, key: str) -> str:
    found = sorted({getattr(r, kind).get(key, "(unset)") for r in rows}, key=lambda v: (len(v), v))
    return ", ".join(found)


def config_diff(a: Side, b: Side) -> dict[str, list[str]]:
    """Config keys whose values differ between the sides (the seed too, when it is not what varies within them)."""
    keys = sorted({k for r in (*a.runs, *b.runs) for k in r.params
                   if k not in NOT_CONFIG - {"seed"} and not k.startswith("tracking.")})
    return {k: [values_of(a.runs, "params", k), values_of(b.runs, "params", k)] for k in keys
            if values_of(a.runs, "params", k) != values_of(b.runs, "params", k)}


def environment_diff(record: Record, a: Side, b: Side) -> dict[str, list[str]]:
    """What could make equal configs give different numbers: versions, threads, device, code, CPU."""
    found = {what: [values_of(a.runs, kind, key), values_of(b.runs, kind, key)]
             for what, (kind, key) in ENVIRONMENT_TAGS.items()}
    files = []
    for side in (a, b):
        try:
            files.append(record.json_artifact(side.runs[0], "environment.json"))
        except ArtifactNotFound:
            files.append({})
    for what, key in ENVIRONMENT_FILE.items():
        if key in files[0] and key in files[1]:  # an evaluation run (`trainlab test --record`) records none
            found[what] = [str(files[0][key]), str(files[1][key])]
    return {k: v for k, v in found.items() if v[0] != v[1]}


# -- A against B ------------------------------------------------------------------------------------


def metric_name(metric: str) -> str:
    """'accuracy', 'test_accuracy' -> 'test_accuracy'; any other recorded metric as given."""
    bare = metric.removeprefix("test_")
    return f"test_{bare}" if bare in METRICS else metric


def compare_pair(record: Record, a: Side, b: Side, *, metric: str = "test_accuracy", alpha: float = ALPHA,
                 resamples: int = RESAMPLES, seed: int = 0) -> Comparison:
    """A against B; single runs on the saved predictions, seed groups on their recorded metrics."""
    metric = metric_name(metric)
    split = shared_split([a, b])
    notes: list[str] = []
    if a.single and b.single:
        if metric.removeprefix("test_") not in METRICS:
            raise ConfigError(f"--metric {metric!r}: two single runs are compared on their test predictions, which "
                              f"give {', '.join('test_' + m for m in METRICS)}; compare seed groups for other metrics")
        pa, pb = record.predictions(a.runs[0]), record.predictions(b.runs[0])
        check_same_examples(split, [(a.runs[0].run_id, pa), (b.runs[0].run_id, pb)])
        found = paired_differences(pa.y_true, pa.probs, pb.probs, resamples=resamples, seed=seed)
        differences = [found[m] for m in METRICS if m in found]
        differences = [Difference(**{**asdict(d), "metric": f"test_{d.metric}"}) for d in differences]
    else:
        differences, on_predictions = seed_group_differences(record, a, b, metric, split, resamples, seed)
    chosen = next((d for d in differences if d.metric == metric), None)
    if chosen is None:
        raise ConfigError(f"--metric {metric!r} is not recorded on both sides; recorded: "
                          f"{', '.join(sorted(set(a.runs[0].metrics) & set(b.runs[0].metrics)))}")
    outcome = chosen.outcome(alpha)
    verdict = verdict_sentence(chosen, outcome, alpha)
    if not (a.single and b.single) and too_few_seeds([a, b], metric) and outcome == "indistinguishable":
        verdict += "; too few seeds to tell whether the configs differ"
    comparison = Comparison(a, b, metric, alpha, split, config_diff(a, b), environment_diff(record, a, b),
                            differences, outcome, verdict, notes)
    if a.single and b.single:
        explain_single_runs(record, comparison, chosen)
    else:
        explain_groups(comparison, chosen, on_predictions)
    return comparison


def too_few_seeds(sides: Sequence[Side], metric: str) -> list[Side]:
    """The sides with fewer than MIN_SEEDS runs recording ``metric``."""
    return [s for s in sides if len(s.values(metric)) < MIN_SEEDS]


def few_seeds_note(who: str) -> str:
    """The one warning every seed-group comparison gives when a side has fewer than MIN_SEEDS runs."""
    return (f"Too few seeds to tell configs apart: {who} fewer than {MIN_SEEDS} runs, so the seed-to-seed spread is "
            "barely measured and a t-test over seeds is not meaningful; add seeds before trusting a verdict about "
            "the configs.")


def predictions_note(examples: int, which: str = "the models") -> str:
    """What a seed-group comparison on saved predictions says, and what it does not."""
    return (f"So {which} are compared on their saved predictions instead, every model of a side on the same "
            f"{examples} test examples (accuracy: a paired t-test over the examples; the other metrics: a paired "
            "bootstrap). This tells whether these models differ on this test split, not whether one config is "
            "better than the other (more seeds of either could change the answer).")


def seed_group_differences(record: Record, a: Side, b: Side, metric: str, split: dict[str, Any], resamples: int,
                           seed: int) -> tuple[list[Difference], bool]:
    """Seed groups: t-tests over the seeds; with fewer than MIN_SEEDS runs a side, paired tests on every model's
    saved predictions when they are there (then True)."""
    if too_few_seeds([a, b], metric) and metric.removeprefix("test_") in METRICS:
        saved = saved_predictions(record, [a, b], split)
        if saved is not None:
            pa, pb = saved
            found = paired_differences(pa[0].y_true, [p.probs for p in pa], [p.probs for p in pb],
                                       resamples=resamples, seed=seed)
            return [Difference(**{**asdict(found[m]), "metric": f"test_{m}"}) for m in METRICS if m in found], True
    return [group_difference(m, a.values(m), b.values(m), seeds_of(a, m), seeds_of(b, m))
            for m in dict.fromkeys([*(f"test_{m}" for m in METRICS), metric]) if a.values(m) and b.values(m)], False


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


def seeds_of(side: Side, metric: str) -> list[str]:
    return [s for s, r in zip(side.seeds, side.runs) if metric in r.metrics and not math.isnan(r.metrics[metric])]


def test_name(d: Difference) -> str:
    """The test's short name, as the verdict sentence says it: 'McNemar', 'Welch's t-test', ..."""
    test = d.test.split(",")[0].split(":")[0]
    return {"McNemar exact": "McNemar"}.get(test, test)


def p_text(p: float) -> str:
    return "n/a" if math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def verdict_sentence(d: Difference, outcome: str, alpha: float, a: str = "A", b: str = "B") -> str:
    """'B is better than A on test accuracy (+0.80 points, 95% CI +0.40 to +1.20, McNemar p = 0.001)'."""
    p = p_text(d.p_value)
    evidence = (f"{amount(d.metric, d.difference)}, 95% CI {interval(d.metric, d.ci_low, d.ci_high)}, "
                f"{test_name(d)} p {'= ' if not p.startswith('<') else ''}{p}")
    if outcome == "indistinguishable":
        return f"{a} and {b} are not distinguishable on {label(d.metric)} ({evidence}; the 5% level needs p < {alpha:g})" \
            if alpha != ALPHA else f"{a} and {b} are not distinguishable on {label(d.metric)} ({evidence})"
    return f"{b} is {outcome} than {a} on {label(d.metric)} ({evidence})"


def explain_single_runs(record: Record, c: Comparison, chosen: Difference) -> None:
    """Two models are not two configs: how much seeds alone move the metric, and how many would settle it."""
    for this, other in ((c.a, c.b), (c.b, c.a)):
        tags = this.runs[0].tags
        if tags.get("job") == "evaluate" and tags.get("evaluated_run") == other.runs[0].run_id:
            c.notes.append(f"{'A' if this is c.a else 'B'} is a test of the other side's own model "
                           f"({tags.get('precision', 'fp32')}): this compares two versions of one trained model.")
            return
    spread, source = measured_seed_spread(record, c.a, c.b, c.metric)
    if spread is None and c.metric == "test_accuracy":
        disagreeing = (chosen.only_a or 0) + (chosen.only_b or 0)
        spread = seed_spread_from_disagreement(disagreeing, int(c.split["test examples"]))
        source = (f"a lower bound, from the {disagreeing} test examples the two models disagree on; train seed "
                  "repeats (`seed=1`, `seed=2`, ...) to measure it")
    c.notes.append("Each side is one trained model: this tells whether these two models differ on this test split, "
                   "not whether one config is better than the other (another seed of either could change the answer).")
    if spread is None:
        c.notes.append("The seed-to-seed spread of this metric is unknown here: train a few seeds of each config and "
                       "compare the groups (--a/--b FILTER) to tell configs apart.")
        return
    c.seed_std, c.seed_std_source = spread, source
    c.seeds_needed = seeds_needed(chosen.difference, spread, c.alpha)
    bound = "at least " if source.startswith("a lower bound") else "about "
    spread_text = f"Seeds alone move {label(c.metric)} by {bound}{amount(c.metric, spread, signed=False)} (std; {source})"
    if c.seeds_needed is None:
        c.notes.append(f"{spread_text}.")
    else:
        size = amount(c.metric, abs(chosen.difference), signed=False).replace(" points", "-point")
        c.notes.append(f"{spread_text}; telling a {size} difference between the configs apart would take "
                       f"{bound}{c.seeds_needed} seeds a side (80% power, {c.alpha:g} level).")


def measured_seed_spread(record: Record, a: Side, b: Side, metric: str) -> tuple[float | None, str]:
    """The pooled std of ``metric`` over other recorded seeds of A's and B's configs, when there are some,
    and where it comes from."""
    pooled, runs, configs = seed_repeats_spread(record, [a.runs[0], b.runs[0]], metric)
    if pooled is None:
        return None, ""
    return pooled, f"measured over {runs} recorded runs of {'these configs' if configs > 1 else 'one of these configs'}"


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


def seed_list(side: Side) -> str:
    return ", ".join(sorted(side.seeds, key=lambda v: (len(v), v)))


def seeds_sentence(a: Side, b: Side) -> str:
    """Which seeds each side ran: 'Both sides ran seeds 0, 1, 2' or 'A ran seeds 0, 1; B ran seeds 3, 4'."""
    sa, sb = seed_list(a), seed_list(b)
    return f"Both sides ran seeds {sa}" if sa == sb else f"A ran seeds {sa}; B ran seeds {sb}"


def explain_groups(c: Comparison, chosen: Difference, on_predictions: bool) -> None:
    """Which seeds each side ran and how they were compared, what was pooled, and the warning for too few seeds."""
    for tag, side in (("A", c.a), ("B", c.b)):
        if side.pooled:
            c.notes.append(f"{tag} pools runs of {len({config_key(r) for r in side.runs})} configurations as one "
                           f"group (--pool; {'; '.join(f'{k}: {v}' for k, v in side.pooled.items())}): its spread "
                           "includes the differences between them.")
    few = too_few_seeds([c.a, c.b], c.metric)
    who = " and ".join("A" if s is c.a else "B" for s in few) + (" have" if len(few) == 2 else " has")
    if on_predictions:
        c.notes.append(f"{seeds_sentence(c.a, c.b)}.")
        c.notes.append(few_seeds_note(who))
        c.notes.append(predictions_note(int(c.split["test examples"])))
        return
    d = chosen
    if not isinstance(d, GroupDifference):
        return
    repeated = [tag for tag, side in (("A", c.a), ("B", c.b)) if len(set(side.seeds)) < len(side.seeds)]
    if d.paired:
        c.notes.append(f"{seeds_sentence(c.a, c.b)}, so they are compared seed by seed.")
    elif repeated:
        c.notes.append(f"{seeds_sentence(c.a, c.b)}: a seed repeats within {' and '.join(repeated)} (runs of several "
                       "configurations pooled), so the sides are compared as independent groups.")
    elif min(d.n_a, d.n_b) >= 2:
        c.notes.append(f"{seeds_sentence(c.a, c.b)}: not the same seeds, so the sides are compared as independent "
                       "groups (the same seeds on both sides would allow a paired comparison).")
    if not math.isnan(d.p_permutation):
        c.notes.append(f"Exact permutation test: p = {p_text(d.p_permutation)}"
                       + (" (with this few seeds it cannot go lower than "
                          f"{minimum_permutation_p(d):.3g}; the t-test carries the verdict)" if
                          minimum_permutation_p(d) >= c.alpha else "") + ".")
    c.notes.append(f"Probability that B's config is better than A's on {label(d.metric)}: {d.prob_b_better:.2f} "
                   "(a flat prior and roughly normal seed-to-seed spread).")
    if few:
        c.notes.append(few_seeds_note(who))


def minimum_permutation_p(d: GroupDifference) -> float:
    """The smallest p an exact two-sided permutation test can give with these group sizes."""
    arrangements = 2 ** d.n_a if d.paired else math.comb(d.n_a + d.n_b, d.n_a)
    return min(1.0, 2 / arrangements)


# -- keeping a comparison ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonRecord:
    run_id: str
    where: list[str]
    tracking_failures: dict[str, str]


def record_comparison(result: Comparison | Ranking, record: Record, *, trackers: Sequence[str] = ("mlflow", "wandb"),
                      warn: Callable[[str], None] | None = None) -> ComparisonRecord:
    """The comparison as a run of its own (job "compare"): its verdict, both sides' run ids, the full result."""
    from trainlab.experiment import job_run

    data = result.as_dict()
    sides = [data["a"], data["b"]] if isinstance(result, Comparison) else data["rows"]
    with job_run("compare", sides[0]["experiment"], record.uri, trackers, warn) as run:
        tags = {"job": "compare", "compare_metric": result.metric, "verdict": result.verdict[:5000]}
        if isinstance(result, Comparison):
            tags.update({"compare_a": ",".join(data["a"]["runs"]), "compare_b": ",".join(data["b"]["runs"]),
                         "compare_a_mlflow": ",".join(data["a"]["mlflow_ids"]),
                         "compare_b_mlflow": ",".join(data["b"]["mlflow_ids"]), "outcome": result.outcome})
            chosen = next(d for d in result.differences if d.metric == result.metric)
            run.log_summary({"difference": chosen.difference, "ci_low": chosen.ci_low, "ci_high": chosen.ci_high,
                             "p_value": chosen.p_value, "a": chosen.a, "b": chosen.b})
        else:
            tags["compared_runs"] = ",".join(r for row in data["rows"] for r in row["runs"])[:5000]
            run.log_summary({"candidates": float(len(result.rows)),
                             "indistinguishable_from_best": float(sum(r.indistinguishable for r in result.rows[1:]))})
        run.set_tags(tags)
        run.log_params({"metric": result.metric, "alpha": str(result.alpha)})
        run.log_dict("comparison.json", data)
    return ComparisonRecord(run.info.run_id, run.where(), dict(run.failures))
