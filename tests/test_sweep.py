"""Sweeps: W&B-format files run offline; the trial tree, pruning, seeds, kills and parallel workers, read back
through MlflowClient and the study."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from trainlab.config import load_config
from trainlab.errors import ConfigError
from trainlab.experiments.sweep_spec import parse_sweep

TRAINLAB = str(Path(sys.executable).with_name("trainlab"))
DIGITS = ["train.epochs=2", "threads=1", "train.early_stop.patience=null"]
EPOCH_KEYS = ("train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_auroc")


def trainlab(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([TRAINLAB, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def write(name: str, spec: dict[str, Any]) -> str:
    Path(name).write_text(yaml.safe_dump(spec), encoding="utf-8")
    return name


def client() -> MlflowClient:
    return MlflowClient(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")


def sweep_runs(c: MlflowClient, sweep_id: str) -> tuple[Any, list[Any]]:
    found = c.search_runs([e.experiment_id for e in c.search_experiments()],
                          filter_string=f"tags.sweep = '{sweep_id}'", max_results=1000)
    parents = [r for r in found if r.data.tags.get("job") == "sweep"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    return parents[0], [r for r in found if r.data.tags.get("job") == "trial"]


def sweep_id_of(result: subprocess.CompletedProcess) -> str:
    line = next(line for line in result.stdout.splitlines() if line.startswith("sweep sweep-"))
    return line.split()[1].rstrip(":")


def base() -> dict[str, Any]:
    return load_config(None, ["data.name=digits"]).model_dump(mode="json")


# -- the sweep file --------------------------------------------------------------------------------


WANDB_STYLE = """
        program: train.py
        command:
          - ${env}
          - python
          - ${program}
          - ${args}
        method: bayes
        metric: {name: val_loss, goal: minimize}
        early_terminate: {type: hyperband, min_iter: 1, eta: 2}
        run_cap: 5
        parameters:
          train:
            parameters:
              optimizer:
                parameters:
                  lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}
                  weight_decay: {distribution: q_uniform, min: 0.0, max: 0.001, q: 0.0001}
              batch_size: {distribution: int_uniform, min: 16, max: 64}
          train.loss.label_smoothing: {distribution: uniform, min: 0.0, max: 0.2}
          model.arch: {distribution: categorical, values: [small, fast]}
          seed: {value: 3}
    """


def test_a_wandb_sweep_file_as_documented_parses_with_trainlab_keys() -> None:
    raw = yaml.safe_load(WANDB_STYLE)
    spec = parse_sweep(raw, base())
    by_key = {p.key: p for p in spec.params}
    assert set(by_key) == {"train.optimizer.lr", "train.optimizer.weight_decay", "train.batch_size", "train.loss.label_smoothing",
                           "model.arch", "seed"}
    assert by_key["train.optimizer.lr"].log and by_key["train.optimizer.lr"].low == 0.0001
    assert by_key["train.optimizer.weight_decay"].q == 0.0001
    assert by_key["train.batch_size"].kind == "int"
    assert by_key["model.arch"].choices == ("small", "fast")
    assert by_key["seed"].kind == "fixed"
    assert (spec.method, spec.metric, spec.goal, spec.run_cap) == ("bayes", "val_loss", "minimize", 5)
    assert spec.pruner == "hyperband" and spec.pruner_settings == {"min_iter": 1, "eta": 2}
    assert spec.ignored == ("program", "command")


@pytest.mark.parametrize("spec, message", [
    ({"method": "grid", "metric": {"name": "val_accuracy"}, "parameters": {"model.arch": {"values": ["small"]}},
      "early_stopping": 1}, "unknown sweep key 'early_stopping'; the valid keys are method, metric, parameters"),
    ({"method": "grid", "metric": {"name": "val_accuracy"}, "parameters": {"model.arch": {"values": []}}},
     "sweep parameter model.arch: values = []: list should have at least 1 item, not 0; 1 to 1,000 candidates"),
    ({"method": "grid", "metric": {"name": "val_accuracy"}, "parameters": {"model.arch": {"values": "small"}}},
     "sweep parameter model.arch: values = 'small': input should be a valid list; write it as a list, e.g. 'values: [small]'"),
    ({"method": "random", "run_cap": 2, "metric": {"name": "val_accuracy"},
      "parameters": {"train.optimizer.lr": {"min": 0.1, "max": 0.001}}}, "min 0.1 is greater than max 0.001"),
    ({"method": "grid", "metric": {"name": "test_accuracy"}, "parameters": {"model.arch": {"values": ["small"]}}},
     "sweep metric.name = 'test_accuracy': not a metric the runs log every epoch (the test split is for reporting, "
     "never for choosing"),
    ({"method": "grid", "metric": {"name": "val_accuracy"}, "parameters": {"train.lr": {"values": [0.1]}}},
     "sweep parameter train.lr = 0.1 does not make a valid run config: unknown config key 'train.lr'"),
    ({"method": "random", "metric": {"name": "val_accuracy"}, "parameters": {"model.arch": {"values": ["small"]}}},
     "set run_cap"),
    ({"method": "random", "run_cap": 2, "metric": {"name": "val_accuracy"},
      "parameters": {"train.optimizer.lr": {"values": [i * 1e-6 for i in range(1, 20_001)]}}},
     "sweep parameter train.optimizer.lr: values = [1e-06, 2e-06, 3e-06, 4e-06, 4.9999999999999996e-06, 6e-06, ... "
     "(20,000 items): list should have at most 1000 items, not 20000; 1 to 1,000 candidates; for more, give a range"),
    ({"method": "grid", "metric": {"name": "val_accuracy"},
      "parameters": {"data.mirror": {"values": ["https://bob:CANARY-s3cret@mirror.example.com/x"]}}},
     'sweep parameter data.mirror: the value "https://***@mirror.example.com/x" holds a credential (masked here)'),
])
def test_bad_sweep_files_fail_with_one_line_and_exit_2(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_sweep(spec, base())
    result = trainlab("sweep", write("bad.yaml", spec), "--tracker", "none")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not Path("runs").exists() and "CANARY" not in result.stderr


def lr(spec: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A random sweep of train.optimizer.lr given as ``spec``, with ``top`` added to (or replacing) its top level."""
    return {"method": "random", "run_cap": 2, "metric": {"name": "val_accuracy"},
            "parameters": {"train.optimizer.lr": spec}, **top}


ARCH = {"model.arch": {"values": ["small"]}}


@pytest.mark.parametrize("spec, message", [
    # the top level
    ({"metric": "val_accuracy", "parameters": ARCH}, "sweep method is required: one of grid, random, bayes"),
    ({"method": "hyper", "metric": "val_accuracy", "parameters": ARCH},
     "sweep method = 'hyper': input should be 'grid', 'random' or 'bayes'; bayes is Optuna's TPE"),
    ({"method": "grid", "parameters": ARCH},
     "sweep metric is required; write e.g. 'metric: {name: val_accuracy, goal: maximize}'"),
    ({"method": "grid", "metric": ["val_loss"], "parameters": ARCH},
     "sweep metric = ['val_loss']: input should be a valid dictionary; write e.g. 'metric: {name: val_accuracy"),
    ({"method": "grid", "metric": {"goal": "maximize"}, "parameters": ARCH},
     "sweep metric.name is required; a validation metric every epoch logs: val_accuracy, val_loss"),
    ({"method": "grid", "metric": {"name": "accuracy"}, "parameters": ARCH},
     "sweep metric.name = 'accuracy': not a metric the runs log every epoch; choose one of val_accuracy, val_loss"),
    ({"method": "grid", "metric": {"name": "val_loss", "goal": "up"}, "parameters": ARCH},
     "sweep metric.goal = 'up': input should be 'maximize' or 'minimize'"),
    ({"method": "grid", "metric": {"name": "val_loss", "mode": "min"}, "parameters": ARCH},
     "unknown key 'mode' in sweep metric; the valid keys are name, goal"),
    ({"method": "grid", "metric": "val_loss"}, "sweep parameters is required; a mapping of config keys to"),
    ({"method": "grid", "metric": "val_loss", "parameters": [1]},
     "sweep parameters = [1]: input should be a valid dictionary; a mapping of config keys to {values: [...]}"),
    ({"method": "grid", "metric": "val_loss", "parameters": {"train": {"parameters": {}}}},
     "sweep parameters is empty; name at least one config key to vary, e.g. 'model.arch: {values: [small, fast]}'"),
    ({"method": "grid", "metric": "val_loss", "parameters": {"train": {"parameters": 5}}},
     "sweep parameter train: parameters = 5: input should be a valid dictionary; a mapping of config keys to"),
    ({"method": "grid", "metric": "val_loss", "parameters": {1: {"values": [1]}}},
     "sweep parameter 1: the name 1 is not text; name a config key, e.g. 'model.arch'"),
    (lr({"values": [0.1]}, run_cap=0), "sweep run_cap = 0: input should be greater than or equal to 1; a whole number"),
    (lr({"values": [0.1]}, run_cap=True), "sweep run_cap = True: input should be a valid integer; a whole number"),
    (lr({"values": [0.1]}, run_cap="3"), "sweep run_cap = '3': input should be a valid integer"),
    (lr({"values": [0.1]}, seeds=2.0), "sweep seeds = 2.0: input should be a valid integer; a whole number: runs of"),
    (lr({"values": [0.1]}, seeds=False), "sweep seeds = False: input should be a valid integer"),
    (lr({"values": [0.1]}, time_budget=0), "sweep time_budget = 0: input should be greater than 0; seconds of trial"),
    (lr({"values": [0.1]}, time_budget="60"), "sweep time_budget = '60': input should be a valid number; seconds"),
    (lr({"values": [0.1]}, seed=None), "sweep seed = None: input should be a valid integer; a whole number"),  # crashed
    (lr({"values": [0.1]}, seed=3.7), "sweep seed = 3.7: input should be a valid integer, got a number with a fracti"),
    (lr({"values": [0.1]}, pruner="hyperband"), "sweep pruner = 'hyperband': input should be 'none', 'median' or 'asha'"),
    (lr({"values": [0.1]}, pruner="median", early_terminate={"type": "hyperband"}),
     "the sweep sets both pruner and early_terminate; keep one"),
    (lr({"values": [0.1]}, early_terminate="hyperband"), "sweep early_terminate = 'hyperband': input should be a valid "
     "dictionary; only {type: hyperband, min_iter, max_iter, eta} is supported"),
    (lr({"values": [0.1]}, early_terminate={"type": "envelope"}), "sweep early_terminate.type = 'envelope': input "
     "should be 'hyperband'; only {type: hyperband, min_iter, max_iter, eta} is supported"),
    (lr({"values": [0.1]}, early_terminate={"type": "hyperband", "bands": 1}),
     "unknown key 'bands' in sweep early_terminate; the valid keys are type, min_iter, max_iter, eta"),
    (lr({"values": [0.1]}, early_terminate={"type": "hyperband", "eta": 0}),
     "sweep early_terminate.eta = 0: input should be greater than or equal to 1; a whole number"),
    (lr({"values": [0.1]}, early_terminate={"type": "hyperband", "min_iter": True}),
     "sweep early_terminate.min_iter = True: input should be a valid integer; a whole number of epochs"),
    (lr({"values": [0.1]}, run_cap=None, method="bayes"),
     "method bayes samples without end: set run_cap (configurations) and/or time_budget (seconds)"),
    # one parameter
    ({"method": "grid", "metric": "val_loss", "parameters": {"model.arch": "small"}}, "sweep parameter model.arch = "
     "'small': input should be a valid dictionary; give it as {values: [...]}, {value: ...} or {min: ..., max: ...}"),
    (lr({"vals": [0.1]}), "unknown key 'vals' in sweep parameter train.optimizer.lr; the valid keys are values, value, "
     "min, max, distribution, q, parameters"),
    (lr({"distribution": "normal", "mu": 0, "sigma": 1}), "sweep parameter train.optimizer.lr: distribution = 'normal': "
     "not supported (trainlab samples bounded ranges); use one of constant, categorical, int_uniform"),
    (lr({"distribution": "gauss"}), "sweep parameter train.optimizer.lr: distribution = 'gauss': input should be "
     "'constant', 'categorical', 'int_uniform'"),
    (lr({"values": [0.1], "probabilities": [1.0]}), "sweep parameter train.optimizer.lr: probabilities = [1.0]: not "
     "supported; list a value more than once to favour it"),
    (lr({"distribution": "constant"}), "sweep parameter train.optimizer.lr: distribution constant needs 'value'"),
    (lr({"distribution": "categorical", "value": 0.1}),
     "sweep parameter train.optimizer.lr: distribution categorical needs 'values', a list, e.g. 'values: [small, fast]'"),
    (lr({"max": 0.1}), "sweep parameter train.optimizer.lr: distribution uniform needs numbers min and max (got "
     "min=None, max=0.1)"),
    (lr({"min": "0.1", "max": 1}), "sweep parameter train.optimizer.lr: min = '0.1': input should be a number"),
    (lr({"min": True, "max": 1}), "sweep parameter train.optimizer.lr: min = True: input should be a number"),
    (lr({"min": 0.1, "max": 0.5, "distribution": "q_uniform"}), "sweep parameter train.optimizer.lr: distribution "
     "q_uniform needs q, the step values are rounded to (a number above 0)"),
    (lr({"min": 0.1, "max": 0.5, "distribution": "q_uniform", "q": 0}),
     "sweep parameter train.optimizer.lr: q = 0: input should be greater than 0; the step that sampled values are "
     "rounded to, e.g. q: 0.01"),
    (lr({"min": 0.1, "max": 0.5, "distribution": "q_uniform", "q": -0.5}),
     "sweep parameter train.optimizer.lr: q = -0.5: input should be greater than 0"),
    (lr({"min": 0.1, "max": 0.5, "distribution": "q_uniform", "q": "x"}),
     "sweep parameter train.optimizer.lr: q = 'x': input should be a number"),
    (lr({"min": 1, "max": 2.5, "distribution": "int_uniform"}),
     "sweep parameter train.optimizer.lr: int_uniform needs whole numbers (got 1, 2.5)"),
    (lr({"min": 0, "max": 0.5, "distribution": "log_uniform_values"}),
     "sweep parameter train.optimizer.lr: log_uniform_values needs min > 0 (got 0)"),
    (lr({"min": 0, "max": 0.5, "distribution": "q_log_uniform_values", "q": 0.1}),
     "sweep parameter train.optimizer.lr: q_log_uniform_values needs min > 0 (got 0)"),
    (lr({"values": [0.1, -1]}), "sweep parameter train.optimizer.lr = -1 does not make a valid run config: "
     "train.optimizer.lr = -1: input should be greater than 0"),
    (lr({"values": "https://bob:CANARY-s3cret@mirror.example.com/x"}),  # masked in the message too (it was not)
     "sweep parameter train.optimizer.lr: values = 'https://***@mirror.example.com/x': input should be a valid list"),
    # the grid
    (lr({"min": 0.001, "max": 0.1}, method="grid", run_cap=None), "sweep parameter train.optimizer.lr: grid search "
     "needs a finite list of values; give 'values: [...]', or a q_uniform distribution with q"),
    ({"method": "grid", "metric": "val_loss", "parameters": {"seed": {"min": 0, "max": 2000}}},
     "the grid has 2,001 configurations; set run_cap, or use method: random or bayes"),
])
def test_each_check_of_the_sweep_file_names_the_field_the_value_and_the_fix(spec: dict[str, Any], message: str) -> None:
    """In-process (the CLI's one line and exit code 2 are checked above): every check, its message in full."""
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        parse_sweep(spec, base())
    assert "\n" not in str(raised.value) and "CANARY" not in str(raised.value)


def test_every_problem_pydantic_finds_is_on_the_one_line() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_sweep(lr({"min": 0.1, "max": 0.5, "distribution": "q_uniform", "q": 0}, run_cap=0, pruner="all"), base())
    said = str(raised.value)
    assert "\n" not in said and said.count(" | ") == 2
    assert said.startswith("sweep parameter train.optimizer.lr: q = 0") and "sweep run_cap = 0" in said
    assert "sweep pruner = 'all'" in said


@pytest.mark.slow
def test_a_million_point_grid_with_a_run_cap_of_2_queues_and_trains_2() -> None:
    """A grid is walked by index: a run_cap of 2 on 10^6 points queues 2 (it queued all: 157 MB, no trial)."""
    spec = write("big.yaml", {"method": "grid", "run_cap": 2, "metric": {"name": "val_accuracy"}, "parameters": {
        "train.optimizer.lr": {"distribution": "q_uniform", "min": 0.001, "max": 1.0, "q": 0.001},
        "train.optimizer.weight_decay": {"distribution": "q_uniform", "min": 0.0, "max": 0.000999, "q": 0.000001}}})
    result = trainlab("sweep", spec, *DIGITS, "train.epochs=1", "--tracker", "none", timeout=300)
    assert result.returncode == 0, result.stderr
    (journal,) = Path("runs").glob("sweep-*/study.journal")
    assert journal.stat().st_size < 100_000
    assert sorted(p.name[-4:] for p in Path("runs").glob("sweep-*-t*")) == ["t000", "t001"]


@pytest.mark.slow
def test_secrets_in_a_sweep_files_other_fields_are_in_no_record() -> None:
    """W&B's launcher fields (argv may hold a token), a description with a credential URL and a name and description
    with a command line's token: in no journal, tag, run file, page or W&B file; the fields are named as ignored."""
    spec = write("secret.yaml", {
        "method": "grid", "metric": {"name": "val_accuracy"}, "name": "lr --token CANARY-name-0912",
        "description": "data from https://alice:CANARY-desc-1234@example.com/data, run with --token CANARY-desc2",
        "command": ["python", "train.py", "--token", "CANARY-argv-5678"], "program": "train.py",
        "parameters": {"train.optimizer.lr": {"values": [0.001]}}})
    result = trainlab("sweep", spec, *DIGITS, "train.epochs=1", "--tracker", "mlflow,wandb",
                      env={"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr
    assert "ignored W&B sweep field(s) program, command, description" in result.stdout
    report = trainlab("report", sweep_id_of(result))
    assert report.returncode == 0, report.stderr
    leaks = [str(p) for p in Path(".").rglob("*") if p.is_file() and p.name != "secret.yaml"
             and b"CANARY" in p.read_bytes()]
    assert leaks == [] and "CANARY" not in result.stdout + result.stderr + report.stdout + report.stderr


@pytest.mark.slow
def test_a_wandb_sweep_file_as_documented_runs_offline() -> None:
    Path("wandb_style.yaml").write_text(WANDB_STYLE, encoding="utf-8")
    result = trainlab("sweep", "wandb_style.yaml", *DIGITS, "--tracker", "mlflow", "--tracker", "wandb")
    assert result.returncode == 0, result.stderr
    assert "ignored W&B sweep field(s) program, command" in result.stdout
    _, trials = sweep_runs(client(), sweep_id_of(result))
    assert len(trials) == 5 and all(t.info.status == "FINISHED" for t in trials)
    for t in trials:
        assert 0.0001 <= float(t.data.params["train.optimizer.lr"]) <= 0.1
        assert 16 <= int(t.data.params["train.batch_size"]) <= 64
        assert t.data.params["model.arch"] in ("small", "fast") and t.data.params["seed"] == "3"


# -- trials recorded as a tree ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_grid_runs_every_configuration_once_nested_under_the_sweep_run(tmp_path: Path) -> None:
    spec = write("grid.yaml", {"method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
                               "program": "train.py",
                               "parameters": {"model": {"values": [{"arch": "small"}, {"arch": "fast"}]},
                                              "train.optimizer.lr": {"values": [0.001, 0.003]}}})
    result = trainlab("sweep", spec, *DIGITS, "--tracker", "mlflow", "--tracker", "wandb")
    assert result.returncode == 0, result.stderr
    assert "ignored W&B sweep field(s) program" in result.stdout
    sid = sweep_id_of(result)
    parent, trials = sweep_runs(client(), sid)
    assert parent.info.status == "FINISHED"
    assert len(trials) == 4 and all(t.data.tags["mlflow.parentRunId"] == parent.info.run_id for t in trials)
    configs = Counter((t.data.params["model.arch"], t.data.params["train.optimizer.lr"]) for t in trials)
    assert configs == Counter({(a, lr): 1 for a in ("small", "fast") for lr in ("0.001", "0.003")})
    c = client()
    for t in trials:
        assert t.info.status == "FINISHED"
        for key in EPOCH_KEYS:
            assert [m.step for m in c.get_metric_history(t.info.run_id, key)] == [1, 2], key
    # the parent holds the ranking; the best is chosen on validation, its test metrics reported beside
    best = max(trials, key=lambda t: t.data.metrics["best_val_accuracy"])
    assert parent.data.metrics["best_val_accuracy"] == best.data.metrics["best_val_accuracy"]
    assert parent.data.metrics["best_test_accuracy"] == pytest.approx(best.data.metrics["test_accuracy"])
    assert parent.data.metrics["trials_complete"] == 4
    ranking = json.loads(Path(c.download_artifacts(parent.info.run_id, "ranking.json", str(tmp_path))).read_text())
    assert [r["value"] for r in ranking] == sorted((r["value"] for r in ranking), reverse=True)
    # `sweep show` reads the same ranking back from MLflow
    shown = json.loads(trainlab("sweep", "show", sid, "--json").stdout)
    assert [(t["number"], t["state"]) for t in shown["trials"]] == [(r["number"], "complete") for r in ranking]
    assert shown["trials"][0]["value"] == ranking[0]["value"]
    # W&B groups the trials by sweep, job type trial
    from wandb_reader import offline_run_file, read_offline_run

    run = read_offline_run(offline_run_file(tmp_path, f"{sid}-t000"))
    assert (run.group, run.job_type, run.exit_code) == (sid, "trial", 0)
    # the leader let go of the sweep as it ended: whoever runs it next leads, even on another machine or in
    # another container, where the leader's process cannot be looked up
    import optuna
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name=sid, storage=optuna.storages.JournalStorage(
        JournalFileBackend(str(Path("runs") / sid / "study.journal"))))
    assert study.user_attrs["leader"] == {}
    # running the same command again runs nothing twice, and says so in one line before the ranking
    again = trainlab("sweep", spec, *DIGITS, "--tracker", "mlflow", "--tracker", "wandb", "--workers", "2")
    assert again.returncode == 0, again.stderr
    assert len(sweep_runs(client(), sid)[1]) == 4 and "joined sweep" not in again.stdout
    assert again.stdout.startswith(f"sweep {sid} already finished (4 configurations); its ranking again below. "
                                   "`--new` starts grid.yaml afresh"), again.stdout
    assert "worker" not in again.stdout and f"sweep {sid}: ranked by val_accuracy (higher is better)" in again.stdout


@pytest.mark.slow
def test_a_finished_sweep_shows_its_ranking_and_new_starts_it_afresh_with_the_workers_it_can_use() -> None:
    custom = {"arch": "custom", "layers": [{"type": "conv", "out": 8, "kernel": 3}, {"type": "relu"},
                                           {"type": "flatten"}]}
    Path("arch.yaml").write_text(yaml.safe_dump({"method": "grid", "metric": {"name": "val_accuracy"}, "parameters": {
        "model": {"values": [custom, {"arch": "small"}]}}}, sort_keys=False))  # keys in the order a person writes
    spec = "arch.yaml"
    first = trainlab("sweep", spec, "train.epochs=1", "threads=1", "--tracker", "mlflow")
    assert first.returncode == 0, first.stderr
    sid = sweep_id_of(first)
    shown = trainlab("sweep", "show", sid)
    # the layers as written (type first), and how long each trial took, read back from MLflow
    as_json = json.loads(trainlab("sweep", "show", sid, "--json").stdout)
    custom_trial = next(t for t in as_json["trials"] if t["params"]["model"]["arch"] == "custom")
    assert list(custom_trial["params"]["model"]["layers"][0]) == ["type", "out", "kernel"]
    rows = [line.split("│") for line in shown.stdout.splitlines() if line.startswith("│") and line.split("│")[1].strip()]
    assert len(rows) == 2 and all(row[-2].strip().isdigit() for row in rows), shown.stdout
    fresh = trainlab("sweep", spec, "train.epochs=1", "threads=1", "--tracker", "mlflow", "--new", "--workers", "3")
    assert fresh.returncode == 0, fresh.stderr
    assert sweep_id_of(fresh) == f"{sid}-2"
    assert "· 2 workers (of --workers 3: only 2 configurations are left) ·" in fresh.stdout
    parent, trials = sweep_runs(client(), f"{sid}-2")
    assert parent.info.status == "FINISHED" and len(trials) == 2 and len(sweep_runs(client(), sid)[1]) == 2
    both = trainlab("sweep", "--resume", sid, "--new")
    assert both.returncode == 2 and "pass one of them" in both.stderr


@pytest.mark.slow
def test_seeds_repeat_every_configuration_and_the_objective_is_their_mean() -> None:
    spec = write("seeds.yaml", {"method": "grid", "metric": {"name": "val_accuracy"}, "seeds": 2,
                                "parameters": {"model.arch": {"values": ["small", "fast"]}}})
    result = trainlab("sweep", spec, *DIGITS, "--tracker", "mlflow")
    assert result.returncode == 0, result.stderr
    sid = sweep_id_of(result)
    _, trials = sweep_runs(client(), sid)
    by_trial: dict[str, list[Any]] = {}
    for t in trials:
        by_trial.setdefault(t.data.tags["sweep_trial"], []).append(t)
    assert sorted(len(v) for v in by_trial.values()) == [2, 2]
    assert all(sorted(t.data.tags["sweep_seed"] for t in runs) == ["0", "1"] for runs in by_trial.values())
    shown = json.loads(trainlab("sweep", "show", sid, "--json").stdout)
    for row in shown["trials"]:
        values = [t.data.metrics["best_val_accuracy"] for t in by_trial[str(row["number"])]]
        assert row["value"] == pytest.approx(sum(values) / 2) and len(row["run_ids"]) == 2


@pytest.mark.slow
def test_pruning_stops_weak_trials_and_records_them_as_pruned() -> None:
    # random with a fixed sampler seed: the same configurations everywhere; a tiny learning rate is far below
    # the median of the first three trials after its second epoch, on any CPU
    spec = write("prune.yaml", {"method": "random", "metric": {"name": "val_accuracy"}, "run_cap": 8,
                                "pruner": "median", "seed": 0,
                                "parameters": {"train.optimizer.lr": {"values": [0.003, 0.00001]}}})
    result = trainlab("sweep", spec, "train.epochs=4", "threads=1", "train.early_stop.patience=null",
                      "--tracker", "mlflow")
    assert result.returncode == 0, result.stderr
    _, trials = sweep_runs(client(), sweep_id_of(result))
    assert len(trials) == 8
    pruned = [t for t in trials if t.data.tags.get("stop_reason") == "pruned"]
    assert pruned, [t.data.tags.get("stop_reason") for t in trials]
    for t in pruned:  # recorded as such, not as failures: finished, fewer epochs, filterable
        assert t.info.status == "FINISHED" and t.data.metrics["epochs_run"] < 4
        assert t.data.params["train.optimizer.lr"] == "1e-05"
    shown = json.loads(trainlab("sweep", "show", sweep_id_of(result), "--json").stdout)
    assert Counter(r["state"] for r in shown["trials"])["pruned"] == len(pruned)


# -- interrupted and parallel ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sweep_killed_mid_trial_resumes_with_every_configuration_once() -> None:
    spec = write("grid.yaml", {"method": "grid", "metric": {"name": "val_accuracy"},
                               "parameters": {"train.optimizer.lr": {"values": [0.001, 0.002, 0.003, 0.004]}}})
    killed = trainlab("sweep", spec, *DIGITS, "--tracker", "mlflow", env={"TRAINLAB_FAILPOINT": "mid-epoch@3"})
    assert killed.returncode == -9
    sid = sweep_id_of(killed)
    _, trials = sweep_runs(client(), sid)
    assert len(trials) == 3  # two trained, the third killed in its second epoch
    # a trial's record ends in the background while the next one trains, and the study is told its result only
    # then: a trial trained but not yet told when the kill came is trained again (a kill must not leave a trial
    # complete with its record cut). How many were told is a matter of timing; the outcome is not
    told = told_complete(sid)
    assert told <= 2
    resumed = trainlab("sweep", "--resume", sid)
    assert resumed.returncode == 0, resumed.stderr
    assert "marked killed and queued again" in resumed.stderr
    parent, trials = sweep_runs(client(), sid)
    finished = Counter(t.data.params["train.optimizer.lr"] for t in trials if t.info.status == "FINISHED")
    assert finished == Counter({"0.001": 1, "0.002": 1, "0.003": 1, "0.004": 1})
    # each stays in the study, counted as killed; except a trial whose runs recorded their end before the kill:
    # the resumed sweep settles it from those records ("ended before their process died") instead
    settled = re.search(r"trial\(s\) ([\d, ]+) ended before their process died", resumed.stderr)
    killed_attempts = 3 - told - (len(settled.group(1).split(", ")) if settled else 0)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_killed"] == killed_attempts
    # MLflow holds each killed attempt whose run it had started; under load a trained trial can be killed before
    # its (background) MLflow start, and then only the study and the run folder know it (a known gap)
    in_mlflow = len(trials) - 4
    assert 1 <= in_mlflow <= killed_attempts
    assert Counter(t.info.status for t in trials) == Counter({"FINISHED": 4, "KILLED": in_mlflow})
    shown = json.loads(trainlab("sweep", "show", sid, "--json").stdout)
    assert Counter(r["state"] for r in shown["trials"]) == Counter({"complete": 4, "killed": in_mlflow})


def told_complete(sweep_id: str) -> int:
    """Trials the sweep's study (its journal) holds as complete."""
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(Path("runs") / sweep_id / "study.journal")))
    study = optuna.load_study(study_name=sweep_id, storage=storage)
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


@pytest.mark.slow
def test_two_workers_on_one_study_run_every_trial_exactly_once() -> None:
    spec = write("grid.yaml", {"method": "grid", "metric": {"name": "val_accuracy"},
                               "parameters": {"model.arch": {"values": ["small", "fast"]},
                                              "train.optimizer.lr": {"values": [0.001, 0.002, 0.003]}}})
    result = trainlab("sweep", spec, *DIGITS, "--tracker", "mlflow", "--workers", "2")
    assert result.returncode == 0, result.stderr
    _, trials = sweep_runs(client(), sweep_id_of(result))
    assert Counter((t.data.params["model.arch"], t.data.params["train.optimizer.lr"]) for t in trials) == \
        Counter({(a, lr): 1 for a in ("small", "fast") for lr in ("0.001", "0.002", "0.003")})
    assert {t.data.params["threads"] for t in trials} == {str(max(1, (os.cpu_count() or 1) // 2))}  # cores shared out
    assert len({t.data.tags["trainlab.pid"] for t in trials}) == 2
    c = client()
    for t in trials:
        assert t.info.status == "FINISHED"
        for key in EPOCH_KEYS:
            assert [m.step for m in c.get_metric_history(t.info.run_id, key)] == [1, 2], key


@pytest.mark.parametrize("sweep_file", sorted(Path(__file__).resolve().parents[1].glob("configs/sweeps/*")),
                         ids=lambda p: p.name)
def test_the_example_sweep_files_in_the_readme_are_valid(sweep_file: Path) -> None:
    from trainlab.experiments.sweep_spec import load_sweep

    quickstart = load_config(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")
    spec = load_sweep(sweep_file, quickstart.model_dump(mode="json"))
    assert spec.trial_cap and spec.params


@pytest.mark.slow
def test_a_journal_lock_left_by_a_killed_process_is_taken_over_after_its_grace_period() -> None:
    """kill -9 while a process holds the journal's lock leaves the lock's symlink; the next sweep must not hang."""
    code = """
import os, sys
from pathlib import Path
from trainlab.config import load_config
from trainlab.experiments.study_storage import make_sweep, storage_for
from trainlab.experiments.sweep_spec import parse_sweep
cfg = load_config(None, ["data.name=digits"])
spec = parse_sweep({"method": "grid", "metric": {"name": "val_accuracy"},
                    "parameters": {"model.arch": {"values": ["small"]}}}, cfg.model_dump(mode="json"))
storage = storage_for(make_sweep(spec, cfg))
if sys.argv[1] == "die-holding-the-lock":
    storage._backend._lock.acquire()
    os._exit(9)
import optuna
optuna.create_study(study_name="after-the-kill", storage=storage)  # a write: it takes the journal's lock
print(len(storage.get_all_studies()))
"""
    held = subprocess.run([sys.executable, "-c", code, "die-holding-the-lock"], capture_output=True, text=True)
    assert held.returncode == 9, held.stderr
    (lock,) = Path("runs").glob("*/study.journal.lock")
    assert lock.is_symlink()
    again = subprocess.run([sys.executable, "-c", code, "use"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.strip() == "1", again.stderr


def test_a_storage_password_is_never_printed_nor_in_a_workers_argv(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from trainlab.cli import sweep as sweep_cli
    from trainlab.experiments import workers
    from trainlab.experiments.study_storage import make_sweep

    cfg = load_config(None, ["data.name=digits"])
    spec = parse_sweep({"method": "grid", "metric": {"name": "val_accuracy"},
                        "parameters": {"model.arch": {"values": ["small", "fast"]}}}, cfg.model_dump(mode="json"))
    the_sweep = make_sweep(spec, cfg, "postgresql://optuna:canary-pw-42@127.0.0.1:1/optuna")
    started: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(workers.subprocess, "Popen", lambda argv, env: started.append((argv, env)))
    workers.start_workers(the_sweep, 2, 1)
    assert len(started) == 2
    for argv, env in started:
        assert not any("canary-pw-42" in arg for arg in argv)  # /proc/PID/cmdline is readable by any user
        assert env[workers.STORAGE_ENV] == the_sweep.storage
    sweep_cli.announce(the_sweep, 2, 2, 2)
    said = capsys.readouterr()
    assert "canary-pw-42" not in said.out + said.err and "study postgresql://***@127.0.0.1:1/optuna" in said.out


@pytest.mark.parametrize("content, said", [
    (b"PK\x03\x04\x80\x81\xfe\xff" * 64, "is not text (byte 4 is not UTF-8)"),
    # libyaml's parser overflowed its stack on this: exit 139, not a word
    (b"method: grid\nparameters: " + b"[" * 100_000 + b"]" * 100_000, "nests over 64 levels deep"),
    # 10^6 values took 7 s to parse before being refused
    (b"method: grid\nparameters: {train.seed: {values: [" + b",".join(b"%d" % i for i in range(10**6)) + b"]}}",
     "is 6.9 MB; a sweep file is at most 1 MB"),
    (b"method: grid\nparameters:\n  x:\n    " + b"- " * 100_000 + b"1\n", "nests over 64 levels deep"),  # a segfault too
    # a "billion laughs": ten lists of ten aliases of the one before, 10^9 values once expanded (it hung)
    (b"method: grid\ndescription:\n  a0: &a0 [1,1,1,1,1,1,1,1,1,1]\n" + b"".join(
        b"  a%d: &a%d [%s]\n" % (i, i, b",".join([b"*a%d" % (i - 1)] * 10)) for i in range(1, 9)),
     "expands to over 200,000 values"),
], ids=["binary", "nested 100,000 deep", "a million values", "100,000 dashes on a line", "billion laughs"])
def test_a_binary_deep_or_huge_sweep_file_is_one_line(content: bytes, said: str) -> None:
    Path("model.pt").write_bytes(content)
    result = trainlab("sweep", "model.pt", "--tracker", "none")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: sweep file 'model.pt' {said}")


def test_resume_of_an_id_that_names_no_sweep_creates_nothing_and_a_path_is_refused() -> None:
    missing = trainlab("sweep", "--resume", "sweep-nosuch-1a2b3c4d")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "no sweep 'sweep-nosuch-1a2b3c4d'" in missing.stderr and not Path("runs").exists()
    escaping = trainlab("sweep", "--resume", "../../x")
    assert escaping.returncode == 2 and "sweep id '../../x' is not one trainlab makes" in escaping.stderr
    empty = trainlab("sweep", "--resume", "")
    assert empty.returncode == 2 and "sweep id '' is not one trainlab makes" in empty.stderr
    os.mkfifo("sweep.yaml")  # reading it would block for ever
    fifo = trainlab("sweep", "sweep.yaml")
    assert fifo.returncode == 2 and "sweep file 'sweep.yaml' is not a regular file" in fifo.stderr
    assert not Path("runs").exists()


@pytest.mark.slow
def test_a_postgresql_storage_that_never_answers_is_one_line_within_seconds() -> None:
    import socket
    import time

    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        spec = write("grid.yaml", {"method": "grid", "metric": {"name": "val_accuracy"},
                                   "parameters": {"model.arch": {"values": ["small"]}}})
        started = time.monotonic()
        result = trainlab("sweep", spec, "--tracker", "none", "--storage",
                          f"postgresql://optuna@127.0.0.1:{silent.getsockname()[1]}/optuna", timeout=120)
        took = time.monotonic() - started
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: cannot open the sweep storage postgresql://") and took < 30, took


@pytest.mark.slow
def test_workers_started_from_a_script_stop_when_their_leader_is_stopped() -> None:
    """`trainlab sweep ... &` in a script: its processes inherit SIGINT ignored; the leader's SIGINT to its
    workers must still stop them (they were SIGKILLed 15 s later, their trials left running)."""
    import signal
    import time

    import psutil

    spec = write("grid.yaml", {"method": "grid", "metric": {"name": "val_accuracy"},
                               "parameters": {"train.optimizer.lr": {"values": [0.001, 0.002, 0.003, 0.004]}}})
    script = f"{TRAINLAB} sweep {spec} train.epochs=30 threads=1 --tracker none --workers 2 -q & wait"
    shell = subprocess.Popen(["bash", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    family: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(list(Path("runs").glob("sweep-*-t00*"))) < 2:
            time.sleep(0.5)
        family = psutil.Process(shell.pid).children(recursive=True)
        leader = next(p for p in family if "sweep" in p.cmdline() and "--join" not in p.cmdline())
        workers = [p for p in family if "--join" in p.cmdline()]
        assert workers and len(list(Path("runs").glob("sweep-*-t00*"))) >= 2
        os.kill(leader.pid, signal.SIGTERM)
        started = time.monotonic()
        gone, alive = psutil.wait_procs(workers, timeout=60)
        assert not alive and time.monotonic() - started < 12  # stopped by the signal, not killed 15 s later
    finally:  # only this test's processes: pytest's other children (W&B's service) serve later tests
        if shell.poll() is None:
            family += psutil.Process(shell.pid).children(recursive=True)
        shell.kill()
        for p in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def test_a_trial_failed_by_a_full_disk_is_rebuilt_as_killed_and_one_that_diverged_as_failed(tmp_path: Path) -> None:
    """A journal rebuilt from the trials' run records: a full disk was the machine's fault, so that trial is
    trained again; a diverged loss is the configuration's, so that one stays failed."""
    from trainlab.experiments.trial_records import trial_records
    from trainlab.tracking.base import SWEEP_TAG, TRIAL_TAG

    cut = {"mlflow": "log_evaluation failed: OSError: [Errno 28] No space left on device"}
    for number, status, error, failures in (
            (0, "failed", "no space left on device while writing runs/x/checkpoints/last.pt; free some space", {}),
            (1, "failed", "the loss diverged (nan) at epoch 1; lower train.optimizer.lr", {}),
            (2, "finished", None, cut)):  # its folder finished, MLflow's record of it cut by the full disk
        folder = tmp_path / f"sweep-s-1a2b3c4d-t{number:03d}"
        folder.mkdir()
        (folder / "run.json").write_text(json.dumps({
            "run_id": folder.name, "status": status, "error": error, "tracking_failures": failures,
            "tags": {SWEEP_TAG: "sweep-s-1a2b3c4d", TRIAL_TAG: str(number)}}))
    found = trial_records(tmp_path, "sweep-s-1a2b3c4d", "val_accuracy", 1)
    assert [found[n].state for n in range(3)] == ["killed", "failed", "killed"]
