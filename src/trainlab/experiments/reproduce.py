"""Reproduce a recorded run with the code it ran, and prove whether it matches.

    the record (runs.Record) -> checks: the commit is here, the data matches its fingerprint,
                                        the environment (warnings: they decide bit-exactness)
        -> a temporary git worktree at the commit, with the recorded diff applied
        -> that code trains the recorded config, seed and thread count (its own process,
           untracked, into a temporary folder)
        -> every per-epoch and test metric and the predictions against the record
        -> a verdict: identical / within tolerance / different; recorded as a run of job
           "reproduce", and the original run tagged with it

The reproduced run's numbers are read from the folder the recorded code wrote (a format every
trainlab version writes), so the comparison and the record are made by this version.
Nothing here prints; ``cli/reproduce.py`` shows what it returns.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.errors import CannotReproduce, ConfigError, TrainlabError
from trainlab.experiments.rebuild import git, train_recorded_code, worktree
from trainlab.experiments.sides import seed_repeats_spread
from trainlab.provenance import IMAGE_DIRTY, environment, untracked_advice

if TYPE_CHECKING:
    from trainlab.runs import Record, RunRow

RTOL, ATOL = 1e-4, 1e-6
COMPARED_EPOCH = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1", "val_auroc", "lr")
COMPARED_TEST = ("test_accuracy", "test_macro_precision", "test_macro_recall", "test_macro_f1", "test_auroc",
                 "test_log_loss")
ENVIRONMENT = ("python", "torch", "numpy", "trainlab", "cpu_capability", "cpu_flags", "cuda")  # threads: below


@dataclass
class Plan:
    """What reproducing a run needs, and what step 1 found."""

    row: RunRow
    commit: str
    diff: str
    config: dict[str, Any]
    threads: int
    warnings: list[str] = field(default_factory=list)  # environment differences: bit-exactness not expected
    nproc: int = 1  # the run's processes (ranks): trained again on as many
    checked: list[str] = field(default_factory=list)  # what was checked and passed


@dataclass(frozen=True)
class Divergence:
    metric: str
    epoch: int | None  # None for a test metric
    recorded: float
    reproduced: float


@dataclass
class Outcome:
    plan: Plan
    verdict: str  # identical / within tolerance / different
    rtol: float
    atol: float
    first_divergence: Divergence | None
    largest: dict[str, float]  # metric -> largest |difference|
    label_agreement: float
    largest_probability_difference: float
    reproduced_seconds: float
    recorded_seconds: float | None
    sentence: str = ""
    tolerance: str = ""  # what "within tolerance" was measured against
    record_id: str = ""
    where: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict in ("identical", "within tolerance") else 1

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "plan"}
        return {"run_id": self.plan.row.run_id, "commit": self.plan.commit, "dirty": bool(self.plan.diff.strip()),
                "threads": self.plan.threads, "warnings": self.plan.warnings, "checked": self.plan.checked, **d}


# -- step 1: can this run be reproduced here? ------------------------------------------------------------


def plan(record: Record, ref: str, repo: Path = Path("."), threads: int | None = None) -> Plan:
    """Everything checked before training; one line naming the first thing that does not match."""
    from trainlab.config import validate_config

    row = record.run(ref)
    if row.tags.get("job", "train") not in ("train", "trial"):
        raise CannotReproduce(f"run {row.run_id} is a {row.tags.get('job')} run; only training runs are reproduced")
    if row.status != "FINISHED":
        raise CannotReproduce(f"run {row.run_id} is {row.status.lower()}: there is no finished result to reproduce "
                              f"(complete it with `trainlab train --resume {row.run_id}`)")
    commit = row.tags.get("git_commit", "none")
    if commit in ("none", ""):
        raise CannotReproduce(f"run {row.run_id} was recorded outside a git checkout: its code cannot be rebuilt")
    top = git(repo, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise CannotReproduce(f"{str(repo.resolve())!r} is not a git checkout; run `trainlab reproduce` in the "
                              f"repository that recorded run {row.run_id} (commit {commit[:12]})")
    if git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise CannotReproduce(f"commit {commit[:12]} (run {row.run_id}'s code) is not in this repository; "
                              "`git fetch` the branch that holds it, then try again")
    if skipped := row.tags.get("git_untracked_skipped"):
        if skipped == IMAGE_DIRTY:
            raise CannotReproduce(f"run {row.run_id} ran in a container image built from a working tree with "
                                  "uncommitted changes, which were not recorded; build the image from a clean "
                                  "commit (`make image`) and train again")
        raise CannotReproduce(f"run {row.run_id} used untracked files too large to record: "
                              f"{untracked_advice(skipped.split(', '))}; then train again")
    diff = record.text_artifact(row, "git.diff")
    config = record.json_artifact(row, "config.yaml")
    recorded_env = record.json_artifact(row, "environment.json")
    used = threads or int(recorded_env.get("torch_threads") or config.get("threads") or os.cpu_count() or 1)
    cfg = validate_config({**config, "threads": used})
    p = Plan(row, commit, diff, config, used, checked=[f"commit {commit[:12]} is in this repository"])
    check_data(record, row, cfg, p)
    check_pretrained(row, cfg, p)
    here = environment(used)
    for key in ENVIRONMENT:
        if key in recorded_env and recorded_env[key] != here.get(key):
            p.warnings.append(f"{key} differs: recorded {recorded_env[key]}, here {here.get(key)}")
    if (recorded_env.get("torch_threads") or used) != used:
        p.warnings.append(f"threads differ: recorded {recorded_env.get('torch_threads')}, reproduced with {used}")
    p.nproc = int(row.tags.get("distributed.world_size") or 1)
    if len(set(row.tags.get("distributed.hosts", "").split(","))) > 1:
        p.warnings.append(f"trained on {p.nproc} processes over several machines; reproduced with {p.nproc} "
                          "processes on this one")
    return p


def check_data(record: Record, row: RunRow, cfg: Any, p: Plan) -> None:
    """The dataset's files here against the SHA-256 the run recorded; the first differing file is named."""
    from trainlab.data import create_dataset

    recorded = record.json_artifact(row, "data.json").get("files_sha256", {})
    try:
        dataset = create_dataset(cfg.data)
    except TrainlabError as exc:
        raise CannotReproduce(f"the data of run {row.run_id} cannot be loaded here: {exc}") from None
    for name, sha in sorted(recorded.items()):
        found = dataset.files.get(name)
        if found != sha:
            what = "is missing" if found is None else f"has SHA-256 {found[:12]}…, the run recorded {sha[:12]}…"
            raise CannotReproduce(f"data file {name!r} of dataset {dataset.name!r} ({dataset.location}) {what}; "
                                  f"run {row.run_id} cannot be reproduced on other data")
    p.checked.append(f"the {len(recorded)} data file(s) match the recorded SHA-256")


def check_pretrained(row: RunRow, cfg: Any, p: Plan) -> None:
    """A backbone's weights file here against the SHA-256 the run recorded (the file is found as the run found it)."""
    import hashlib

    from trainlab.backbones import pretrained_file

    recorded = row.tags.get("pretrained_sha256")
    if not recorded:
        return
    try:
        path = pretrained_file(cfg.model.arch, cfg.model.pretrained or "package")
    except TrainlabError as exc:
        raise CannotReproduce(f"the pretrained weights of run {row.run_id} are not here: {exc}") from None
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    if found != recorded:
        raise CannotReproduce(f"pretrained weights file {str(path)!r} has SHA-256 {found[:12]}…, run {row.run_id} "
                              f"recorded {recorded[:12]}…; put the file it used in place to reproduce it")
    p.checked.append(f"the pretrained weights ({path.name}) match the recorded SHA-256")


# -- step 2: the recorded code, rebuilt ------------------------------------------------------------------


# -- step 3 and 4: compare, and a verdict ------------------------------------------------------------------


def compare_with_record(record: Record, p: Plan, folder: Path, rtol: float = RTOL, atol: float = ATOL,
                        seconds: float = 0.0) -> Outcome:
    recorded_history = record.history(p.row)
    reproduced_history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
    summary = json.loads((folder / "summary.json").read_text())
    first: Divergence | None = None
    largest: dict[str, float] = {}
    exact, close = True, True
    pairs: list[tuple[str, int | None, float, float]] = []
    if len(recorded_history) != len(reproduced_history):
        exact = close = False
        first = Divergence("epochs_run", None, float(len(recorded_history)), float(len(reproduced_history)))
    for number, (then, now) in enumerate(zip(recorded_history, reproduced_history), 1):
        pairs += [(k, number, then[k], now[k]) for k in COMPARED_EPOCH if k in then and k in now]
    pairs += [(k, None, p.row.metrics[k], summary[k]) for k in COMPARED_TEST if k in p.row.metrics and k in summary]
    for key, epoch, a, b in pairs:
        gap = abs(a - b) if not (math.isnan(a) and math.isnan(b)) else 0.0
        largest[key] = max(largest.get(key, 0.0), gap)
        if gap != 0:
            exact = False
        if not gap <= atol + rtol * abs(a):
            close = False
            first = first or Divergence(key, epoch, a, b)
    recorded_p = record.predictions(p.row)
    reproduced_labels, reproduced_probs = read_predictions(folder / "test_predictions.csv", recorded_p.class_names)
    agreement = float(np.mean(reproduced_labels == recorded_p.probs.argmax(axis=1))) if len(reproduced_labels) == len(
        recorded_p.y_true) else 0.0
    gap_p = float(np.max(np.abs(reproduced_probs - recorded_p.probs))) if reproduced_probs.shape == recorded_p.probs.shape \
        else math.inf
    if gap_p != 0:
        exact = False
    verdict = "identical" if exact else "within tolerance" if close and gap_p <= max(atol, 1e-6) + rtol else "different"
    tolerance = f"rtol {rtol:g}, atol {atol:g}"
    test_pairs = [(k, a, b) for k, epoch, a, b in pairs if epoch is None]
    if verdict == "different" and len(recorded_history) == len(reproduced_history):
        spread = seed_spread(record, p.row, [k for k, _, _ in test_pairs])
        if spread and all(k in spread and abs(a - b) <= spread[k][0] for k, a, b in test_pairs):
            verdict = "within tolerance"
            tolerance = f"the seed spread of {max(n for _, n in spread.values())} recorded runs of this config"
    if verdict == "different" and first is None:
        first = Divergence("test predictions", None, 1.0, agreement)
    outcome = Outcome(p, verdict, rtol, atol, first, largest, agreement, gap_p, seconds,
                      p.row.metrics.get("train_seconds"), tolerance=tolerance)
    outcome.sentence = sentence(outcome)
    return outcome


def seed_spread(record: Record, row: RunRow, metrics: list[str]) -> dict[str, tuple[float, int]]:
    """metric -> (std, runs) over the recorded seed repeats of this run's config (when it has at least 3)."""
    found = {}
    for metric in metrics:
        std, runs, _ = seed_repeats_spread(record, [row], metric)
        if std is not None and runs >= 3:
            found[metric] = (std, runs)
    return found


def read_predictions(path: Path, class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    index = {name: k for k, name in enumerate(class_names)}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([index.get(r["predicted_label"], -1) for r in rows])
    probs = np.array([[float(r[f"p_{name}"]) for name in class_names] for r in rows]).reshape(len(rows), -1)
    return labels, probs / probs.sum(axis=1, keepdims=True)  # as the record's table is read (runs.Record)


def sentence(o: Outcome) -> str:
    run = o.plan.row.run_id
    if o.verdict == "identical":
        text = f"run {run} reproduces identical: every epoch's metrics, every test metric and every prediction, bit for bit"
    elif o.verdict == "within tolerance":
        worst = max(o.largest.items(), key=lambda kv: kv[1], default=("none", 0.0))
        text = (f"run {run} reproduces within tolerance ({o.tolerance}): the largest difference is "
                f"{worst[1]:.3g} in {worst[0]}; {o.label_agreement:.2%} of test labels identical")
    else:
        d = o.first_divergence
        at = f" at epoch {d.epoch}" if d and d.epoch else ""
        text = (f"run {run} reproduces different: {d.metric if d else 'the result'} first diverged{at} "
                f"(recorded {d.recorded:.6g}, reproduced {d.reproduced:.6g}); {o.label_agreement:.2%} of test labels "
                "identical" if d else f"run {run} reproduces different")
    if o.verdict != "identical" and o.plan.warnings:
        text += "; a bit-exact match was not expected: " + "; ".join(o.plan.warnings)
    return text


# -- all of it ----------------------------------------------------------------------------------------------


def reproduce(record: Record, ref: str, *, repo: Path = Path("."), threads: int | None = None, rtol: float = RTOL,
              atol: float = ATOL, record_it: bool = True, trackers: tuple[str, ...] = ("mlflow", "wandb"),
              warn: Callable[[str], None] | None = None, on_step: Callable[[str], None] = lambda step: None) -> Outcome:
    import time

    p = plan(record, ref, repo, threads)
    on_step("checked")
    started = time.perf_counter()
    with worktree(repo, p.commit, p.diff) as tree, tempfile.TemporaryDirectory(prefix="trainlab-rerun-") as out:
        on_step("training")
        folder = train_recorded_code(tree, p.config, p.threads, Path(out), p.nproc)
        seconds = time.perf_counter() - started
        outcome = compare_with_record(record, p, folder, rtol, atol, seconds)
        if record_it:
            record_reproduction(record, outcome, folder, trackers, warn)
    return outcome


def record_reproduction(record: Record, o: Outcome, folder: Path, trackers: tuple[str, ...],
                        warn: Callable[[str], None] | None) -> None:
    """A run of job "reproduce" (tag reproduces = the original), and the original tagged with its latest verdict."""
    from datetime import datetime

    from trainlab.run_setup import job_run

    row = o.plan.row
    summary = json.loads((folder / "summary.json").read_text())
    with job_run("reproduce", row.experiment, record.uri, trackers, warn) as run:
        run.set_tags({"job": "reproduce", "reproduces": row.run_id, "reproduces_mlflow": row.mlflow_id,
                      "verdict": o.verdict, "verdict_sentence": o.sentence[:5000], "git_commit": o.plan.commit,
                      "threads": str(o.plan.threads)})
        run.log_summary({k: float(v) for k, v in summary.items() if isinstance(v, (int, float))}
                        | {"label_agreement": o.label_agreement, "reproduce_seconds": o.reproduced_seconds})
        run.log_dict("reproduction.json", o.as_dict())
        run.log_artifact(folder / "metrics.jsonl")
        run.log_artifact(folder / "test_predictions.csv")
    o.record_id, o.where = run.info.run_id, run.where()
    with_date = f"{o.verdict} ({datetime.now():%Y-%m-%d %H:%M}, run {o.record_id})"
    record.set_tag(row, "reproduced", with_date)


def dry_run(record: Record, ref: str, repo: Path = Path("."), threads: int | None = None) -> Plan:
    """Step 1 alone, and the diff applied in a worktree that is removed at once."""
    p = plan(record, ref, repo, threads)
    with worktree(repo, p.commit, p.diff):
        p.checked.append("the recorded uncommitted changes apply" if p.diff.strip() else "the tree was clean")
    return p


def runs_to_check(record: Record, filter_string: str) -> list[RunRow]:
    if not filter_string:
        raise ConfigError("--all needs --filter \"...\" (MLflow search syntax), e.g. --filter \"params.dataset = "
                          "'digits'\"")
    return [r for r in record.search(filter_string) if r.tags.get("job", "train") in ("train", "trial")
            and r.status == "FINISHED"]
