"""The docs as a reader meets them: the site builds in strict mode, the README stays a short entry with the two
set-up commands on its first screen, every relative link and anchor leads somewhere, every `trainlab` command
a bash block names exists with the options it uses, and the blocks marked to run do, in a copy of the project.

The marking convention (docs/architecture.md, "Doc commands that are run"): a ```bash block right after an
HTML comment starting `<!-- run` is executed; other ```bash blocks are examples, checked but not run; output
goes in ```text blocks, never run. The README's tour is run by tests/test_readme.py."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from markdown.extensions.toc import slugify
from typer.testing import CliRunner

from trainlab.cli import app

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
FIRST_SCREEN = 40  # lines
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", flags=re.S | re.M)


def bash_blocks(path: Path) -> list[tuple[str, bool]]:
    """Every ```bash block of a page, with whether it is marked to run (an HTML comment `<!-- run` right before)."""
    text = path.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        if match.group(1) == "bash":
            before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            blocks.append((match.group(2), before.startswith("<!-- run")))
    return blocks


def commands(block: str) -> list[str]:
    """The command lines of a bash block: continuation lines joined, comments and blank lines dropped."""
    lines = [line.split(" #", 1)[0].strip() for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_site_builds_in_strict_mode_with_no_warning(tmp_path: Path) -> None:
    """No broken link or anchor, no page missing from the nav, no snippet file missing (mkdocs.yml: strict)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                            "-d", str(tmp_path / "site")], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    said = built.stdout + built.stderr
    assert built.returncode == 0, said
    assert [line for line in said.splitlines() if "WARNING" in line] == []
    assert (tmp_path / "site" / "speed" / "index.html").is_file()
    # the figures come from the bench scripts' results files, included as they are
    assert "store of 100 runs made in" in (tmp_path / "site" / "speed" / "index.html").read_text()


def test_every_docs_page_is_in_the_nav() -> None:
    nav = (REPO / "mkdocs.yml").read_text()
    assert [page.name for page in DOCS if f": {page.name}" not in nav] == []


def test_the_readme_is_short_and_its_first_screen_gives_exactly_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    first_screen = text.split("\n## ", 1)[0] + "\n"  # what comes before the first section: the tour
    assert len(first_screen.splitlines()) <= FIRST_SCREEN
    blocks = [body for _, body in FENCE.findall(first_screen)]
    assert [command for block in blocks for command in commands(block)] == ["make run", "make test"]


def page_text_without_code(path: Path) -> str:
    """The page without fenced blocks and inline code, where a (link) is only shown, not followed."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", path.read_text()))


def headings(path: Path) -> set[str]:
    """The anchors MkDocs gives the headings of a page (the toc extension's own slugify)."""
    found = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        if line.startswith("#"):
            title = re.sub(r"[`*]", "", line.lstrip("#").strip())
            found.add(slugify(title, "-"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_and_a_heading(page: Path) -> None:
    broken = []
    for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", page_text_without_code(page)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_file():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in headings(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert broken == []


def trainlab_invocations() -> list[tuple[str, list[str]]]:
    """(page, arguments) for every `trainlab ...` command in a bash block of the README or the docs."""
    found = []
    for page in PAGES:
        for block, _ in bash_blocks(page):
            for line in commands(block):
                for args in re.findall(r"(?:^|[\s;&|(])(?:\S*/)?trainlab((?:\s+[^|;&)]*)?)", line):
                    try:
                        words = shlex.split(args)
                    except ValueError:
                        words = args.split()
                    found.append((page.name, words))
    return found


def help_of(path: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    return result.exit_code, result.output


def test_every_trainlab_command_in_a_bash_block_exists_with_the_options_it_uses() -> None:
    invocations = trainlab_invocations()
    assert len(invocations) >= 60  # the README's tour and the pages' examples
    helps: dict[tuple[str, ...], tuple[int, str]] = {}
    wrong = []
    for page, words in invocations:
        path: list[str] = []
        if words and not words[0].startswith("-"):
            path = [words[0]]
            code, text = helps.setdefault((words[0],), help_of(path))
            # a command group's own subcommand (`runs show`), as its help lists it under "Commands"
            listed = text.split("Commands", 1)[1] if "Commands" in text else ""
            if len(words) > 1 and re.search(rf"^\W*{re.escape(words[1])}\s", listed, flags=re.M):
                path.append(words[1])
        code, text = helps.setdefault(tuple(path), help_of(path))
        if code != 0:
            wrong.append(f"{page}: trainlab {' '.join(path)} --help exits {code}")
            continue
        for option in (w.split("=", 1)[0] for w in words if w.startswith("--") or re.fullmatch(r"-[A-Za-z]", w)):
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text):
                wrong.append(f"{page}: trainlab {' '.join(path)} has no {option}")
    assert wrong == []


def runnable_blocks() -> list[tuple[str, str]]:
    return [(page.name, block) for page in DOCS for block, run in bash_blocks(page) if run]


def test_the_blocks_marked_to_run_are_few_and_cheap() -> None:
    blocks = runnable_blocks()
    assert len(blocks) >= 3
    # cheap means no training, sweep or server: the marked blocks run in the slow test below, in seconds
    for page, block in blocks:
        for line in commands(block):
            assert not re.search(r"trainlab (train|all|sweep|serve|ui|reproduce)\b(?!.*--help)", line), (page, line)


@pytest.mark.slow
def test_the_doc_commands_marked_to_run_work_as_written_in_a_copy_of_the_project(tmp_path: Path) -> None:
    from test_readme import fresh_copy

    if sys.prefix == sys.base_prefix:
        pytest.skip("the doc commands call .venv/bin/trainlab (make test uses the project's venv)")
    project = fresh_copy(tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_", "VIRTUAL_ENV"))}
    ran = 0
    for page, block in runnable_blocks():
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{page}:\n{block}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        assert "Traceback" not in done.stdout + done.stderr, f"{page}:\n{block}\n{done.stderr[-3000:]}"
        ran += len(commands(block))
    print(f"ran {ran} doc commands")
    assert ran >= 5
    # they write nothing git would see
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=project,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status
