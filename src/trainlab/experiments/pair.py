"""Compare two sides, two runs or two groups of seed repeats: is B really better than A? (Many: ``ranking.py``.)

    references --Record (runs.py)--> sides (sides.py): one run, or the seed repeats of one config
        -> refuse sides whose test splits differ (a paired test on other examples means nothing)
        -> the config diff and the environment diff that matters
        -> significance.py: a run a side -> paired tests on the saved predictions;
                            seed groups -> tests over the seeds' recorded test metrics;
                            fewer than MIN_SEEDS runs a side -> paired tests on every model's saved
                            predictions (a t-test over 1 or 2 seeds is not meaningful)
        -> one verdict sentence and the notes that qualify it (``comparison_run.py`` keeps it as a run)

Nothing here prints; ``cli/compare.py`` shows what it returns.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from trainlab.errors import ArtifactNotFound, ConfigError
from trainlab.experiments.seed_groups import group_difference, seed_spread_from_disagreement, seeds_needed
from trainlab.experiments.sides import (
    NOT_CONFIG,
    Side,
    check_same_examples,
    config_key,
    saved_predictions,
    seed_repeats_spread,
    seeds_of,
    shared_split,
    too_few_seeds,
    values_of,
)
from trainlab.experiments.significance import (
    ALPHA,
    METRICS,
    RESAMPLES,
    Difference,
    GroupDifference,
    paired_differences,
)
from trainlab.experiments.wording import (
    amount,
    few_seeds_note,
    interval,
    label,
    metric_name,
    p_text,
    predictions_note,
)

if TYPE_CHECKING:
    from trainlab.runs import Record

ENVIRONMENT_TAGS = {"trainlab": ("tags", "trainlab_version"), "git commit": ("tags", "git_commit"),
                    "dirty": ("tags", "git_dirty"), "threads": ("params", "threads"), "device": ("params", "device")}
ENVIRONMENT_FILE = {"python": "python", "torch": "torch", "cpu": "cpu_model", "cpu capability": "cpu_capability"}


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


# -- what differs -------------------------------------------------------------------------------------------


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


# -- A against B --------------------------------------------------------------------------------------------


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


def test_name(d: Difference) -> str:
    """The test's short name, as the verdict sentence says it: 'McNemar', 'Welch's t-test', ..."""
    test = d.test.split(",")[0].split(":")[0]
    return {"McNemar exact": "McNemar"}.get(test, test)


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
