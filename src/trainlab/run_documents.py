"""What a run records about itself before its first step: its config as params, tags (data fingerprint, git
commit, seed), the environment, the data and model descriptions and the git diff. Its report page shows them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainlab import __version__
from trainlab.config import Config, flatten_config, recorded_config
from trainlab.data import Dataset, Splits, data_fingerprint
from trainlab.provenance import environment, git_state
from trainlab.tracking import Run


@dataclass(frozen=True)
class RunDocuments:
    """What a run records about itself before its first step (and its report page shows)."""

    params: dict[str, str]
    tags: dict[str, str]
    environment: dict[str, Any]
    data: dict[str, Any]
    model: dict[str, Any]
    git_diff: str
    untracked_skipped: tuple[str, ...] = ()  # untracked files too big to record, the biggest first


def run_documents(cfg: Config, dataset: Dataset, splits: Splits, threads: int, parameters: int,
                  val_source: str, pretrained: dict[str, str] | None = None) -> RunDocuments:
    git = git_state()
    # short aliases make filters read naturally: params.model = 'small'
    aliases = {"model": cfg.model.arch, "dataset": cfg.data.name, "optimizer": cfg.train.optimizer.name,
               "lr": str(cfg.train.optimizer.lr), "batch_size": str(cfg.train.batch_size),
               "epochs": str(cfg.train.epochs)}
    tags = {
        "dataset": dataset.name,
        "model": cfg.model.arch,
        "git_commit": git.commit or "none",
        "git_dirty": str(git.dirty).lower(),
        "trainlab_version": __version__,
        "data_fingerprint": data_fingerprint(dataset)[:16],
        "seed": str(cfg.seed),
        **({"skipped_files": str(len(dataset.skipped))} if dataset.skipped else {}),
        **({"git_untracked_skipped": ", ".join(git.untracked_skipped)[:4000]} if git.untracked_skipped else {}),
        **({"pretrained_sha256": pretrained["sha256"]} if pretrained and "sha256" in pretrained else {}),
    }
    data = {
        "name": dataset.name, "location": dataset.location, "files_sha256": dataset.files,
        "fingerprint": data_fingerprint(dataset), "splits": splits.sizes(), "validation": val_source,
        **({"train_source": dataset.train_source} if dataset.train_source else {}),
        **({"test_source": dataset.test_source} if dataset.test_source else {}),
        "class_names": list(dataset.class_names), "input_shape": list(dataset.input_shape),
        "class_counts": {split: dict(zip(dataset.class_names, counts, strict=True))
                         for split, counts in splits.class_counts().items()},
        **({"ingestion": dataset.ingestion} if dataset.ingestion else {}),
        "skipped_files": list(dataset.skipped),
    }
    return RunDocuments({**flatten_config(cfg), **aliases}, tags, environment(threads), data,
                        {"arch": cfg.model.arch, "parameters": parameters, **({"pretrained": pretrained} if pretrained else {})},
                        git.diff, git.untracked_skipped)


def record_start(run: Run, cfg: Config, docs: RunDocuments) -> None:
    """Everything known before the first step: config, code, data and environment."""
    run.log_params(docs.params)
    run.set_tags(docs.tags)
    run.log_dict("config.yaml", recorded_config(cfg))
    run.log_dict("environment.json", docs.environment)
    run.log_dict("data.json", docs.data)
    run.log_dict("model.json", docs.model)
    run.log_text("git.diff", docs.git_diff)  # empty for a clean tree: present either way, so readers need no special case
