"""A recorded run's code rebuilt and trained again: its commit checked out in a temporary git worktree with the
recorded diff applied, the recorded config trained there by that code in a fresh process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trainlab.errors import CannotReproduce


def git(repo: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True, text=True, timeout=120)


@contextmanager
def worktree(repo: Path, commit: str, diff: str) -> Iterator[Path]:
    """A detached worktree at ``commit`` with ``diff`` applied; removed afterwards, also on Ctrl-C."""
    folder = Path(tempfile.mkdtemp(prefix="trainlab-reproduce-"))
    tree = folder / "code"
    added = git(repo, "worktree", "add", "--detach", "--quiet", str(tree), commit)
    if added.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise CannotReproduce(f"git could not check out commit {commit[:12]}: {added.stderr.strip().splitlines()[-1]}")
    try:
        if diff.strip():
            applied = git(tree, "apply", "--whitespace=nowarn", "-", stdin=diff)
            if applied.returncode != 0:
                why = (applied.stderr.strip().splitlines() or ["no reason given"])[0]
                raise CannotReproduce(f"the recorded uncommitted changes do not apply to commit {commit[:12]} "
                                      f"({why}); the run cannot be rebuilt as it ran")
        yield tree
    finally:
        git(repo, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(folder, ignore_errors=True)
        git(repo, "worktree", "prune")


def train_recorded_code(tree: Path, recorded_config: dict[str, Any], threads: int, out: Path, nproc: int = 1) -> Path:
    """Train ``recorded_config`` with the recorded code (its own process, or ``nproc`` under torchrun) into ``out``;
    the run folder it wrote."""
    import yaml

    config = out / "config.yaml"
    out.mkdir(parents=True, exist_ok=True)
    settings = {**recorded_config, "threads": threads, "output_dir": str(out / "runs")}
    if "report" in settings:  # code that writes pages: not this one (a second of drawing); older code has no such key
        settings["report"] = False
    config.write_text(yaml.safe_dump(settings))
    source = tree / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")]),
           "WANDB_MODE": "disabled"}
    command = [sys.executable, "-c", "import sys; from trainlab.cli import main; sys.argv[0] = 'trainlab'; main()",
               "train", "-c", str(config), "tracking.trackers=[]", "-q", *(["--nproc", str(nproc)] if nproc > 1 else [])]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CannotReproduce(f"the recorded code failed to train (exit {done.returncode}): {why}")
    folders = [f for f in (out / "runs").iterdir() if (f / "summary.json").is_file()]
    if len(folders) != 1:
        raise CannotReproduce(f"the recorded code wrote {len(folders)} finished runs into {out}, expected one")
    return folders[0]
