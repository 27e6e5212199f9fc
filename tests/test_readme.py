"""The README as a new user meets it: its first command and every shell block of its tour, run as written, in
order, in a fresh copy of the project; afterwards git sees nothing new (everything written is ignored)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow
README = REPO / "README.md"
TOUR = "## A five-minute tour"
# a command that serves until Ctrl-C: the runner waits for this in its output, then presses Ctrl-C, as a person does
UNTIL_CTRL_C = "(Ctrl-C stops it)"
RUNNER = r'''
set -e -o pipefail
until_ready() {  # run "$@" in the background; once it prints its "Ctrl-C stops it" line, send it SIGINT
    local log; log=$(mktemp)
    set -m  # its own process group, as in a terminal: a script's background jobs would ignore SIGINT
    "$@" > "$log" 2>&1 &
    local pid=$! waited=0
    set +m
    until grep -q "Ctrl-C stops it" "$log"; do
        if ! kill -0 "$pid" 2>/dev/null || [ $waited -ge 300 ]; then cat "$log"; echo "never ready: $*"; return 1; fi
        sleep 1; waited=$((waited + 1))
    done
    cat "$log"
    kill -INT "$pid"; wait "$pid" || [ $? -eq 130 ]
}
'''


def tour_blocks(text: str) -> list[str]:
    """The ```bash blocks of the README's tour section (other languages, e.g. ```text, are shown, not run)."""
    section = text.split(TOUR, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def tour_script(blocks: list[str]) -> str:
    lines = []
    for number, block in enumerate(blocks, 1):
        lines.append(f"echo '::: tour block {number}'")
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split(" #", 1)[0].strip()
            lines.append(f"until_ready {command}" if UNTIL_CTRL_C in line else line)
    return RUNNER + "\n".join(lines) + "\n"


def fresh_copy(target: Path) -> Path:
    """The project as a fresh clone has it (tracked and new, not ignored, files), committed, with this venv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    venv = Path(sys.prefix)
    (target / ".venv").symlink_to(venv)
    stamp = venv / ".installed"
    if stamp.exists():  # the lock files are not newer than this venv: make does not build another
        for name in ("requirements.lock", "requirements-bootstrap.lock", "pyproject.toml"):
            os.utime(target / name, (stamp.stat().st_mtime - 60, stamp.stat().st_mtime - 60))
    git = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=target, check=True)
    subprocess.run([*git, "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-qm", "a fresh clone"], cwd=target, check=True)
    return target


def test_the_tour_has_blocks_and_the_first_screen_gives_the_two_commands() -> None:
    text = README.read_text()
    first_screen = text.split("\n## ", 1)[0]
    assert "make run" in first_screen and "make test" in first_screen
    assert len(tour_blocks(text)) >= 5


def test_make_run_then_every_block_of_the_tour_works_as_written(tmp_path: Path) -> None:
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tour runs in the project's venv (make test uses it)")
    project = fresh_copy(tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix))
    made = subprocess.run(["make", "run"], cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    assert "test accuracy" in made.stdout and "uv could not be installed" not in made.stdout

    script = tour_script(tour_blocks(README.read_text()))
    done = subprocess.run(["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=1800)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-6000:]
    assert "Traceback" not in said and "error:" not in said, said[-6000:]
    # what each block must show a new user
    assert "sweep sweep-architectures-95163a49: grid over model" in said  # the id the README names
    assert "verdict:" in said and "report: " in said
    assert "verdict: identical" in said.lower() or "identical" in said
    assert '"predictions": [{"0": ' in said  # the served model answered the curl line
    assert "MLflow UI for sqlite:///" in said and "/runs?workflowType=machine_learning" in said
    for page in ("explore_dataset.html", "analyse_run.html"):
        assert (project / "build" / "notebooks" / page).is_file()
    # everything trainlab, MLflow, W&B, Jupyter and the README's commands wrote is ignored by git
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=project,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status


PHOTOS = "## Your own photos"


def test_the_own_photos_section_goes_from_a_folder_to_a_registered_model_in_its_three_commands(tmp_path: Path) -> None:
    """The section's block, run as written, with HOME holding a folder of real photos (brick / grass / gravel
    crops of scikit-image's photographs, JPEG and PNG, grey and colour) and a few new ones to label."""
    from photos import write_texture_folder

    block = re.findall(r"```bash\n(.*?)```", README.read_text().split(PHOTOS, 1)[1].split("\n## ", 1)[0], re.S)
    assert len(block) == 1 and len([line for line in block[0].splitlines() if line.strip()]) == 3
    home = tmp_path / "home"
    write_texture_folder(home / "photos", train_per_class=12, test_per_class=6)
    new = home / "new-photos"
    new.mkdir()
    for name in ("brick", "grass", "gravel"):
        first = sorted((home / "photos" / "test" / name).iterdir())[0]
        shutil.copy(first, new / f"unlabelled-{name}{first.suffix}")
    project = tmp_path / "project"
    shutil.copytree(REPO / "configs", project / "configs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_"))}
    env.update(HOME=str(home), PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
               COLUMNS="200")
    done = subprocess.run(["bash", "-e", "-c", block[0]], cwd=project, env=env, capture_output=True, text=True,
                          timeout=600)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-4000:]
    assert "Traceback" not in said and "warning" not in said, said[-4000:]
    assert "registered as models:/my-photos/1" in said and "report: runs/" in said
    labels = {line.split("│")[1].strip().rsplit("/", 1)[1]: line.split("│")[2].strip()
              for line in done.stdout.splitlines() if "unlabelled-" in line}
    assert labels == {f"unlabelled-{name}{ext}": name for name, ext in
                      ((p.stem.split("-")[1], p.suffix) for p in new.iterdir())}, done.stdout
