"""`trainlab compare`: statistics proven on cases whose answer is known, then on real recorded runs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from wandb_reader import offline_run_file, read_offline_run

from trainlab.cli import app
from trainlab.experiment import run_experiment
from trainlab.experiments.seed_groups import group_difference, seed_spread_from_disagreement, seeds_needed
from trainlab.experiments.significance import (
    WeightedScores,
    holm,
    mcnemar,
    paired_differences,
)
from trainlab.tracking.mlflow_store import resolve_tracking_uri

runner = CliRunner()


def probabilities(y: np.ndarray, right: np.ndarray, classes: int, seed: int) -> np.ndarray:
    """Probabilities whose argmax is the true class exactly where ``right`` is set."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(classes), size=len(y)) * 0.5
    wrong = (y + 1 + rng.integers(0, classes - 1, len(y))) % classes
    top = np.where(right, y, wrong)
    p[np.arange(len(y)), top] += 0.5 + rng.uniform(0, 0.4, len(y))
    return (p / p.sum(axis=1, keepdims=True)).round(6)


@pytest.mark.parametrize("classes", [10, 2])
def test_metrics_under_bootstrap_weights_equal_scikit_learns(classes: int) -> None:
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, 1500)
    p = probabilities(y, rng.random(1500) < 0.8, classes, seed=1).round(2)  # coarse: many tied scores
    p = p / p.sum(axis=1, keepdims=True)
    weights = rng.integers(0, 4, size=(6, len(y))).astype(float)
    scored = WeightedScores(y, p).under(weights)
    for w, (acc, f1, auc, loss) in zip(weights, scored.T):
        pred = p.argmax(axis=1)
        assert acc == pytest.approx(accuracy_score(y, pred, sample_weight=w), abs=1e-12)
        assert f1 == pytest.approx(f1_score(y, pred, average="macro", labels=range(classes), zero_division=0,
                                            sample_weight=w), abs=1e-12)
        expected_auc = (roc_auc_score(y, p[:, 1], sample_weight=w) if classes == 2 else
                        roc_auc_score(y, p, multi_class="ovr", average="macro", labels=range(classes), sample_weight=w))
        assert auc == pytest.approx(expected_auc, abs=1e-12)
        assert loss == pytest.approx(log_loss(y, p, labels=range(classes), sample_weight=w), abs=1e-12)


def test_identical_models_are_not_distinguishable() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 2000)
    p = probabilities(y, rng.random(2000) < 0.9, 10, seed=2)
    found = paired_differences(y, p, p.copy(), resamples=500)
    for d in found.values():
        assert d.difference == 0 and d.ci_low == d.ci_high == 0 and d.p_value == 1.0
        assert d.outcome(0.05) == "indistinguishable"


@pytest.mark.slow
def test_300_more_right_of_10000_is_better_and_swapping_mirrors() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 10_000)
    right_a = rng.random(10_000) < 0.9
    gains = rng.choice(np.flatnonzero(~right_a), 300, replace=False)
    right_b = right_a.copy()
    right_b[gains] = True
    pa, pb = probabilities(y, right_a, 10, seed=3), probabilities(y, right_b, 10, seed=4)

    ab = paired_differences(y, pa, pb, resamples=1000)["accuracy"]
    assert ab.difference == pytest.approx(0.03) and (ab.only_a, ab.only_b) == (0, 300)
    assert ab.p_value < 0.001 and ab.outcome(0.05) == "better"
    assert 0 < ab.ci_low < 0.03 < ab.ci_high

    ba = paired_differences(y, pb, pa, resamples=1000)["accuracy"]
    assert ba.outcome(0.05) == "worse" and ba.difference == pytest.approx(-ab.difference)
    assert ba.p_value == ab.p_value and (ba.only_a, ba.only_b) == (300, 0)
    assert (ba.ci_low, ba.ci_high) == pytest.approx((-ab.ci_high, -ab.ci_low))


def test_mcnemar_counts_only_the_examples_one_model_gets_right() -> None:
    a = np.array([True] * 50 + [False] * 10)
    b = np.array([True] * 60)
    assert mcnemar(a, b) == (0, 10, pytest.approx(2 * 0.5 ** 10))  # the exact binomial tail, both sides
    assert mcnemar(a, a) == (0, 0, 1.0)


def test_seed_groups() -> None:
    a, b = [0.900, 0.905, 0.898], [0.930, 0.934, 0.929]
    d = group_difference("test_accuracy", a, b, ["0", "1", "2"], ["2", "1", "0"])
    assert d.paired and d.outcome(0.05) == "better" and d.p_value < 0.01 and d.prob_b_better > 0.99
    assert d.ci_low < d.difference < d.ci_high and d.difference == pytest.approx(np.mean(b) - np.mean(a))
    assert d.p_permutation == pytest.approx(0.25)  # 3 seeds, paired: 8 sign patterns, the observed one of 2 extremes

    mirrored = group_difference("test_accuracy", b, a, ["0", "1", "2"], ["2", "1", "0"])
    assert mirrored.outcome(0.05) == "worse" and mirrored.p_value == pytest.approx(d.p_value)
    assert mirrored.prob_b_better == pytest.approx(1 - d.prob_b_better)

    independent = group_difference("test_accuracy", a, b, ["0", "1", "2"], ["3", "4", "5"])
    assert not independent.paired and "Welch" in independent.test and independent.outcome(0.05) == "better"

    same = group_difference("test_accuracy", a, list(a), ["0", "1", "2"], ["0", "1", "2"])
    assert same.outcome(0.05) == "indistinguishable" and same.p_value == 1.0

    loss = group_difference("test_log_loss", [0.30, 0.31, 0.29], [0.20, 0.21, 0.19])
    assert loss.outcome(0.05) == "better" and loss.prob_b_better > 0.99  # lower loss is better

    single = group_difference("test_accuracy", [0.90], [0.93, 0.934, 0.929])
    assert "one run" in single.test and single.outcome(0.05) == "better"


def test_several_models_a_side_are_compared_example_by_example() -> None:
    from scipy.stats import ttest_rel

    rng = np.random.default_rng(6)
    y = rng.integers(0, 10, 1000)
    a = [probabilities(y, rng.random(1000) < 0.9, 10, seed=s) for s in (7, 8)]
    b = [probabilities(y, rng.random(1000) < 0.5, 10, seed=s) for s in (9, 10)]
    found = paired_differences(y, a, b, resamples=300)
    accuracy = found["accuracy"]
    ca, cb = (np.mean([p.argmax(axis=1) == y for p in side], axis=0) for side in (a, b))
    assert accuracy.difference == pytest.approx(cb.mean() - ca.mean())
    assert accuracy.p_value == pytest.approx(ttest_rel(cb, ca).pvalue) and accuracy.outcome(0.05) == "worse"
    assert -1 <= accuracy.ci_low < accuracy.difference < accuracy.ci_high <= 1
    assert accuracy.only_a is None and accuracy.test == "paired t-test over 1000 examples, 2 vs 2 models"
    assert found["macro_f1"].outcome(0.05) == "worse" and "2 vs 2 models" in found["macro_f1"].test
    same = paired_differences(y, a, [p.copy() for p in a], resamples=300)
    assert all(d.difference == 0 and d.p_value == 1.0 for d in same.values())


def test_holm_adjusts_step_down() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5] and holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])


def test_seed_spread_and_seeds_needed() -> None:
    # a config whose per-example correctness varies across seeds, independently: the disagreement of one pair
    # of seeds predicts the spread that many seeds show
    rng = np.random.default_rng(5)
    difficulty = rng.beta(0.3, 3, 4000)  # probability a seed's model gets each example wrong
    seeds = rng.random((400, 4000)) > difficulty
    measured = seeds.mean(axis=1).std(ddof=1)
    disagree = int(np.sum(seeds[0] != seeds[1]))
    assert seed_spread_from_disagreement(disagree, 4000) == pytest.approx(measured, rel=0.2)
    assert seeds_needed(0.01, 0.01) == 16  # 2 * (1.96 + 0.84)^2
    assert seeds_needed(0.0, 0.01) is None and seeds_needed(0.01, math.nan) is None


# -- real recorded runs --------------------------------------------------------------------------------


def train(fast_config, *overrides: str):  # noqa: ANN201
    base = ("data.name=digits", "train.epochs=2", "tracking.trackers=[mlflow]", "name=compare")
    return run_experiment(fast_config(*base, *overrides))


@pytest.fixture
def four_runs(fast_config) -> list:
    """Two seeds of two configs on digits (360 test images)."""
    return [train(fast_config, f"model.arch={arch}", f"seed={seed}") for arch in ("small", "fast") for seed in (0, 1)]


def invoke(*args: str, code: int = 0):  # noqa: ANN201
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def correct_from_folder(run_dir: Path) -> np.ndarray:
    with (run_dir / "test_predictions.csv").open() as f:
        return np.array([row["true_label"] == row["predicted_label"] for row in csv.DictReader(f)])


@pytest.mark.slow
def test_two_runs_compared_on_their_saved_predictions(four_runs) -> None:
    from mlflow import MlflowClient

    small, fast = four_runs[0], four_runs[2]
    client = MlflowClient(resolve_tracking_uri())
    fast_mlflow = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                     f"tags.trainlab_run_id = '{fast.run_id}'")[0].info.run_id
    client.create_registered_model("digits-cnn")
    version = client.create_model_version("digits-cnn", f"runs:/{fast_mlflow}/checkpoints", fast_mlflow)
    client.set_registered_model_alias("digits-cnn", "champion", version.version)

    # B as a run folder, an MLflow run id and a registry alias: one resolver, one answer
    results = [json.loads(invoke("compare", small.run_id, ref, "--json", "--resamples", "300").stdout)
               for ref in (str(fast.run_dir), fast_mlflow, "models:/digits-cnn@champion")]
    assert results[0]["metrics"] == results[1]["metrics"] == results[2]["metrics"]
    found = results[0]
    assert found["b"]["runs"] == [fast.run_id] and found["config_diff"]["model.arch"] == ["small", "fast"]
    assert found["test_split"]["test examples"] == 360 and found["environment_diff"] == {}

    accuracy = found["metrics"][0]
    assert accuracy["metric"] == "test_accuracy"
    assert accuracy["a"] == pytest.approx(small.test.metrics["accuracy"]) and accuracy["b"] == pytest.approx(
        fast.test.metrics["accuracy"])
    ca, cb = correct_from_folder(small.run_dir), correct_from_folder(fast.run_dir)
    assert (accuracy["only_a"], accuracy["only_b"]) == (int(np.sum(ca & ~cb)), int(np.sum(~ca & cb)))
    assert [m["metric"] for m in found["metrics"]] == ["test_accuracy", "test_macro_f1", "test_auroc", "test_log_loss"]
    assert found["verdict"].startswith(("A and B are not distinguishable", "B is better", "B is worse"))
    assert any("not whether one config is better" in note for note in found["notes"])

    shown = invoke("compare", small.run_id, fast.run_id, "--resamples", "300").output
    assert "verdict:" in shown and "McNemar" in shown and "model.arch" in shown


@pytest.mark.slow
def test_runs_on_different_test_splits_are_refused(fast_config) -> None:
    a = train(fast_config, "seed=0")
    b = train(fast_config, "seed=0", "data.split_seed=1")
    out = invoke("compare", a.run_id, b.run_id, code=2).output
    assert "different test splits" in out and "split seed" in out and len(out.strip().splitlines()) == 1
    assert "Traceback" not in out


@pytest.mark.parametrize(("args", "message"), [
    ([], "nothing to compare"),
    (["--a", "params.seed = '0'"], "give both --a FILTER and --b FILTER"),
    (["no-such-run", "other"], "no run 'no-such-run'"),
])
def test_bad_input_is_one_line(fast_config, args: list[str], message: str) -> None:
    train(fast_config)
    out = invoke("compare", *args, code=2).output
    assert message in out and len(out.strip().splitlines()) == 1


@pytest.mark.slow
def test_seed_groups_ranking_record_and_grouped_runs(four_runs) -> None:
    from mlflow import MlflowClient
    from scipy import stats

    groups = json.loads(invoke("compare", "--a", "params.model = 'small'", "--b", "params.model = 'fast'",
                               "--json").stdout)
    accuracy = groups["metrics"][0]
    assert accuracy["test"] == "paired t-test over 360 examples, 2 vs 2 models"  # 2 seeds: on the predictions
    assert "Both sides ran seeds 0, 1." in groups["notes"]
    small = [o.test.metrics["accuracy"] for o in four_runs[:2]]
    fast = [o.test.metrics["accuracy"] for o in four_runs[2:]]
    assert accuracy["difference"] == pytest.approx(np.mean(fast) - np.mean(small))

    ranking = json.loads(invoke("compare", "--filter", "params.dataset = 'digits'", "--json").stdout)
    rows = ranking["rows"]
    assert len(rows) == 4 and rows[0]["against_best"] is None
    means = [r["mean"] for r in rows]
    assert means == sorted(means, reverse=True)
    assert all(r["p_holm"] >= r["against_best"]["p_value"] for r in rows[1:])

    kept = invoke("compare", four_runs[0].run_id, four_runs[2].run_id, "--record", "-t", "mlflow", "-t", "wandb").output
    assert "recorded" in kept and "W&B (offline)" in kept
    client = MlflowClient(resolve_tracking_uri())
    ids = [e.experiment_id for e in client.search_experiments()]
    record = client.search_runs(ids, "tags.job = 'compare'")[0]
    assert record.data.tags["compare_a"] == four_runs[0].run_id and record.data.tags["compare_b"] == four_runs[2].run_id
    assert record.data.tags["verdict"] and "p_value" in record.data.metrics
    assert "comparison.json" in [a.path for a in client.list_artifacts(record.info.run_id)]
    mirror = read_offline_run(offline_run_file(Path.cwd(), record.data.tags["trainlab_run_id"]))
    assert mirror.job_type == "compare" and mirror.config["trainlab_tags"]["verdict"] == record.data.tags["verdict"]
    assert mirror.summary["p_value"] == pytest.approx(record.data.metrics["p_value"])

    grouped = invoke("runs", "--group", "model").output
    if np.std(small) > 0:  # a share's interval stays in [0, 1]
        low, high = stats.t.interval(0.95, 1, loc=np.mean(small), scale=np.std(small, ddof=1) / math.sqrt(2))
        low, high = max(low, 0), min(high, 1)
    else:  # two seeds that scored alike (they may, on some CPU): the interval is the mean, not NaN
        low = high = np.mean(small)
    assert f"{low:.4f} to {high:.4f}" in grouped, grouped


@pytest.mark.slow
def test_a_sweeps_configs_ranked_and_compared_with_their_seeds(digits_sweep) -> None:
    sweep = digits_sweep("method: grid\nseeds: 2\nmetric: {name: val_accuracy, goal: maximize}\n"
                         "parameters:\n  model.arch: {values: [small, fast]}\n")
    ranking = json.loads(invoke("compare", sweep, "--json").stdout)
    assert [len(r["runs"]) for r in ranking["rows"]] == [2, 2]
    assert {r["params"]["model.arch"] for r in ranking["rows"]} == {"small", "fast"}
    assert ranking["rows"][1]["against_best"]["test"] == "paired t-test over 360 examples, 2 vs 2 models"

    pair = json.loads(invoke("compare", f"{sweep}#0", f"{sweep}#1", "--json").stdout)
    assert pair["a"]["params"] == {"model.arch": "small"} and len(pair["a"]["runs"]) == 2
    assert "Both sides ran seeds 0, 1." in pair["notes"]  # the trials share their seeds
    assert pair["config_diff"]["model.arch"] == ["small", "fast"]
    missing = invoke("compare", f"{sweep}#7", f"{sweep}#1", code=2).output
    assert "no trial 7" in missing


@pytest.mark.slow
def test_a_damaged_prediction_table_is_one_line(fast_config) -> None:
    from urllib.parse import urlparse

    from mlflow import MlflowClient

    a, b = train(fast_config, "seed=0"), train(fast_config, "seed=1")
    client = MlflowClient(resolve_tracking_uri())
    run = client.search_runs([e.experiment_id for e in client.search_experiments()],
                             f"tags.trainlab_run_id = '{b.run_id}'")[0]
    table = Path(urlparse(run.info.artifact_uri).path) / "test_predictions.json"
    table.write_text(table.read_text()[:3000])  # cut short, as by a full disk on the server
    out = invoke("compare", a.run_id, b.run_id, code=2).output
    assert f"run {b.run_id}'s test_predictions.json" in out and "is damaged" in out
    assert len(out.strip().splitlines()) == 1


# -- fabricated records: runs written straight into an MLflow store (no training), their answer known ---------


class FakeStore:
    """An MLflow store in the test's folder holding made-up finished runs: predictions on one 360-image split."""

    def __init__(self) -> None:
        from trainlab.tracking.mlflow_store import client_for, experiment_id

        uri = resolve_tracking_uri()
        self.client = client_for(uri)
        self.experiment = experiment_id(self.client, "fabricated", uri)
        self.y = np.random.default_rng(0).integers(0, 10, 360)
        self.count = 0

    def run(self, accuracy: float, seed: int, *, tags: dict[str, str] | None = None, right: np.ndarray | None = None,
            **params: str) -> str:
        """A finished training run right on ``accuracy`` of the split (or exactly on ``right``); its trainlab id."""
        from mlflow.entities import Metric, Param, RunTag

        from trainlab.experiments.significance import WeightedScores

        self.count += 1
        run_id = f"fake-{self.count:03d}"
        if right is None:
            n = len(self.y)
            right = np.zeros(n, bool)
            right[np.random.default_rng(self.count).choice(n, round(accuracy * n), replace=False)] = True
        probs = probabilities(self.y, right, 10, seed=self.count)
        scores = WeightedScores(self.y, probs).under(np.ones((1, len(self.y))))[:, 0]
        config = {"seed": str(seed), "dataset": "digits", "data.name": "digits", "data.split_seed": "0",
                  "data.test_fraction": "0.2", "model.arch": "small", "model": "small", "train.epochs": "2", **params}
        config["model"] = config["model.arch"]
        every = {"trainlab_run_id": run_id, "job": "train", "dataset": "digits", "data_fingerprint": "f00d",
                 "seed": str(seed), **(tags or {})}
        mlflow_id = self.client.create_run(self.experiment).info.run_id
        self.client.log_batch(mlflow_id, metrics=[Metric(f"test_{m}", float(v), 0, 0) for m, v in
                                                  zip(("accuracy", "macro_f1", "auroc", "log_loss"), scores)],
                              params=[Param(k, v) for k, v in config.items()],
                              tags=[RunTag(k, v) for k, v in every.items()])
        rows = [[i, str(t), str(int(p.argmax())), *p.tolist()] for i, (t, p) in enumerate(zip(self.y, probs))]
        self.client.log_dict(mlflow_id, {"columns": ["index", "true_label", "predicted_label",
                                                     *(f"p_{c}" for c in range(10))], "data": rows},
                             "test_predictions.json")
        self.client.set_terminated(mlflow_id, "FINISHED")
        return run_id

    def sweep(self, name: str, trials: list[list[float]]) -> str:
        """A sweep whose trial N ran one seed per accuracy in ``trials[N]`` (seeds 0, 1, ...)."""
        self.run(0.0, 0, tags={"job": "sweep"}, right=np.zeros(len(self.y), bool))
        parent = f"fake-{self.count:03d}"
        for trial, accuracies in enumerate(trials):
            for seed, accuracy in enumerate(accuracies):
                self.run(accuracy, seed, tags={"job": "trial", "sweep": parent, "sweep_trial": str(trial),
                                               "sweep_params": json.dumps({"train.epochs": trial + 2})},
                         **{"train.epochs": str(trial + 2)})
        return parent


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


FEW_SEEDS = "Too few seeds to tell configs apart"


def test_two_seeds_a_trial_cannot_call_a_45_percent_model_as_good_as_a_98_percent_one(store: FakeStore) -> None:
    # the walk-through's sweep: 2 seeds a trial; a t-test over 2 seeds has 1 degree of freedom (its interval ran
    # from -122.6 to +15.1 points) and called the 45% trial "≈ best"
    sweep = store.sweep("two-seeds", [[0.980, 0.983], [0.970, 0.975], [0.500, 0.390]])
    ranking = json.loads(invoke("compare", sweep, "--json").stdout)
    rows = ranking["rows"]
    assert [round(r["mean"], 3) for r in rows] == [0.982, 0.972, 0.444]
    worst = rows[2]
    assert worst["indistinguishable_from_best"] is False and worst["p_holm"] < 0.001
    for row in rows[1:]:
        d = row["against_best"]
        assert -1 <= d["ci_low"] <= d["difference"] <= d["ci_high"] <= 1  # a difference of shares: ±100 points
        assert "2 vs 2 models" in d["test"]  # which method, on what
    assert any(note.startswith(FEW_SEEDS) for note in ranking["notes"])
    assert any("not whether one config is better" in note for note in ranking["notes"])
    shown = invoke("compare", sweep).output
    assert FEW_SEEDS in shown
    worst_line = next(line for line in shown.splitlines() if line.startswith("│ 3 "))
    assert "worse" in worst_line and "≈ best" not in worst_line

    pair = json.loads(invoke("compare", f"{sweep}#0", f"{sweep}#2", "--json").stdout)
    accuracy = pair["metrics"][0]
    assert pair["outcome"] == "worse" and -1 <= accuracy["ci_low"] <= accuracy["ci_high"] <= 1
    assert sum(n.startswith(FEW_SEEDS) for n in pair["notes"]) == 1


def test_the_same_seed_warning_for_pairs_rankings_and_filters(store: FakeStore) -> None:
    sweep = store.sweep("warn", [[0.90, 0.91], [0.90, 0.91]])
    notes = [json.loads(invoke(*args, "--json").stdout)["notes"] for args in (
        ("compare", sweep), ("compare", f"{sweep}#0", f"{sweep}#1"),
        ("compare", "--a", "params.`train.epochs` = '2'", "--b", "params.`train.epochs` = '3'"))]
    warnings = [[n for n in found if n.startswith(FEW_SEEDS)] for found in notes]
    assert all(len(w) == 1 for w in warnings), notes
    assert "fewer than 3 runs" in warnings[0][0]


@pytest.mark.slow
def test_two_seeds_that_cannot_be_told_apart_say_so(store: FakeStore) -> None:
    same = [np.random.default_rng(seed).random(360) < 0.9 for seed in (0, 1)]
    for arch in ("small", "fast"):
        for seed, right in enumerate(same):
            store.run(0, seed, right=right, **{"model.arch": arch})
    pair = json.loads(invoke("compare", "--a", "params.model = 'small'", "--b", "params.model = 'fast'",
                             "--json").stdout)
    assert pair["outcome"] == "indistinguishable" and "too few seeds to tell" in pair["verdict"]
    assert pair["metrics"][0]["difference"] == 0


def test_a_group_t_interval_stays_within_the_metrics_range() -> None:
    d = group_difference("test_accuracy", [0.980, 0.983], [0.500, 0.390], ["0", "1"], ["0", "1"])
    assert -1 <= d.ci_low <= d.ci_high <= 1 and "clipped" in d.test
    assert "fewer than 3" in d.test  # 1 degree of freedom: the interval is not meaningful, and it says so
    plenty = group_difference("test_accuracy", [0.90, 0.905, 0.898], [0.93, 0.934, 0.929], ["0", "1", "2"],
                              ["0", "1", "2"])
    assert "clipped" not in plenty.test and "fewer than" not in plenty.test
    loss = group_difference("test_log_loss", [0.3, 2.9], [0.2, 0.1])  # a loss has no upper bound: nothing to clip
    assert "clipped" not in loss.test and loss.ci_high - loss.ci_low > 2


def test_filters_matching_several_configs_are_refused_unless_pooled(store: FakeStore) -> None:
    for epochs in ("5", "15"):
        for seed in (0, 1):
            store.run(0.9, seed, **{"train.epochs": epochs})
    for seed in (0, 1):
        store.run(0.9, seed, **{"model.arch": "fast", "train.epochs": "5"})
    args = ("compare", "--a", "params.model = 'small'", "--b", "params.model = 'fast'")
    out = invoke(*args, code=2).output
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out
    assert "train.epochs" in out and "5, 15" in out and "--pool" in out and "--a" in out

    pooled = json.loads(invoke(*args, "--pool", "--json").stdout)
    assert len(pooled["a"]["runs"]) == 4 and pooled["a"]["seeds"] == ["0", "1", "0", "1"]
    assert pooled["a"]["pooled"] == {"train.epochs": "5, 15"} and "pooled" not in pooled["b"]
    notes = " ".join(pooled["notes"])
    assert "different seeds" not in notes
    assert "A ran seeds 0, 0, 1, 1" in notes and "B ran seeds 0, 1" in notes
    assert "train.epochs" in notes  # what was pooled, said
    narrowed = json.loads(invoke("compare", "--a", "params.model = 'small' and params.`train.epochs` = '5'",
                                 "--b", "params.model = 'fast'", "--json").stdout)
    assert "Both sides ran seeds 0, 1" in " ".join(narrowed["notes"])
    alone = invoke("compare", "fake-001", "fake-005", "--pool", code=2).output  # --pool is for --a/--b
    assert "--pool applies to --a/--b" in alone and len(alone.strip().splitlines()) == 1


def test_a_trial_whose_seeds_did_not_all_finish_is_left_out_of_a_sweeps_ranking(store: FakeStore) -> None:
    # Ctrl-C between a trial's two seeds: its first seed finished (and scored best), its second was killed; the
    # sweep ran the configuration again as another trial. Ranking the killed trial first misled a new user.
    sweep = store.sweep("interrupted", [[0.90, 0.91], [0.92, 0.93], [0.99]])
    killed = store.run(0.2, 1, tags={"job": "trial", "sweep": sweep, "sweep_trial": "2",
                                     "sweep_params": json.dumps({"train.epochs": 4})}, **{"train.epochs": "4"})
    (run,) = store.client.search_runs([store.experiment], f"tags.trainlab_run_id = '{killed}'")
    store.client.set_terminated(run.info.run_id, "KILLED")
    ranking = json.loads(invoke("compare", sweep, "--json").stdout)
    assert [r["name"] for r in ranking["rows"]] == [f"{sweep}#1", f"{sweep}#0"]
    assert any("Left out 1 trial(s) whose seeds did not all finish" in n and "#2" in n for n in ranking["notes"])


def test_a_filter_matching_one_seed_twice_is_refused_unless_pooled(store: FakeStore) -> None:
    for sweep in ("sweep-a", "sweep-b"):  # the same config swept twice: seeds 0 and 1 each time
        for seed in (0, 1):
            store.run(0.9, seed, tags={"sweep": sweep})
            store.run(0.8, seed, tags={"sweep": sweep}, **{"model.arch": "fast"})
    args = ("compare", "--a", "params.model = 'small'", "--b", "params.model = 'fast'")
    out = invoke(*args, code=2).output
    assert len(out.strip().splitlines()) == 1 and "2 runs of seed 0" in out
    assert "and tags.sweep = 'sweep-a'" in out and "--pool" in out
    assert invoke(*args, "--pool", "--json").exit_code == 0
