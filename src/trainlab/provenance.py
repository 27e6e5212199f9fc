"""Facts recorded at run start: the code version (git) and the environment."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from trainlab import __version__


@dataclass(frozen=True)
class GitState:
    commit: str | None  # None outside a git checkout
    branch: str | None
    dirty: bool
    diff: str  # uncommitted changes, as a patch: tracked files, then untracked (not ignored) files as new files
    untracked_skipped: tuple[str, ...] = ()  # untracked files too large to record: the run cannot be rebuilt


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(cwd: Path | None = None) -> GitState:
    cwd = Path(cwd or os.getcwd())
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return image_git_state()
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd) or ""
    diff = _git(["diff", "HEAD", "--no-color", "--binary"], cwd) or ""
    new_files, skipped = untracked_patch(cwd)
    return GitState(commit.strip(), (branch or "").strip() or None, bool(status.strip() or new_files or skipped),
                    diff + new_files, skipped)


IMAGE_DIRTY = "(the image was built from a working tree with uncommitted changes; they were not recorded)"


def image_git_state() -> GitState:
    """Outside a git checkout: the commit a container image was built from (``TRAINLAB_GIT_COMMIT``,
    set by the Dockerfile from its build arguments, as the image keeps no .git folder), else none."""
    commit = os.environ.get("TRAINLAB_GIT_COMMIT", "").strip()
    if not commit:
        return GitState(None, None, False, "")
    dirty = os.environ.get("TRAINLAB_GIT_DIRTY", "").strip().lower() in ("1", "true", "yes")
    return GitState(commit, os.environ.get("TRAINLAB_GIT_BRANCH", "").strip() or None, dirty, "",
                    (IMAGE_DIRTY,) if dirty else ())


UNTRACKED_BUDGET = 1_000_000  # bytes of untracked files a run records; larger ones are named, not kept

# what trainlab, its README's commands, MLflow, W&B and Jupyter write into a project: never source
GENERATED_DIRS = ("runs", "mlruns", "mlartifacts", "wandb", "reports", "build", "data", ".trainlab",
                  ".ipynb_checkpoints", "__pycache__")
# what a project's code is written in; anything else untracked and big (a .bin, .csv, .db, .pt) is data or output
SOURCE_SUFFIXES = (".py", ".pyi", ".yaml", ".yml", ".json", ".toml", ".cfg", ".ini", ".txt", ".md", ".rst", ".sh",
                   ".j2", ".jinja", ".sql", ".c", ".h", ".cpp", ".js", ".ts", ".css", ".r", ".jl")


def untracked_patch(cwd: Path) -> tuple[str, tuple[str, ...]]:
    """Files git does not track (and does not ignore) as a patch that creates them, so a run made from a
    working tree with new source files can be rebuilt; files past the budget are returned by name, the
    biggest first."""
    listed = _git(["ls-files", "--others", "--exclude-standard", "-z", "--full-name"], cwd) or ""
    top = Path((_git(["rev-parse", "--show-toplevel"], cwd) or str(cwd)).strip())
    patches, skipped, used = [], [], 0
    for name in sorted(n for n in listed.split("\0") if n):
        size = (top / name).stat().st_size if (top / name).is_file() else 0
        if used + size > UNTRACKED_BUDGET:
            skipped.append((size, name))
            continue
        try:  # `git diff --no-index` exits 1 when the files differ, which they always do here
            out = subprocess.run(["git", "diff", "--no-index", "--binary", "--no-color", "--", "/dev/null", name],
                                 cwd=top, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            skipped.append((size, name))
            continue
        patches.append(out.stdout)
        used += size
    return "".join(patches), tuple(name for _, name in sorted(skipped, key=lambda s: (-s[0], s[1])))


def looks_generated(name: str) -> bool:
    """Output or data (a store, a page, a checkpoint, a download, a binary) rather than source a run's code needs:
    under a folder trainlab writes, or not in a source language (a file without a suffix, a Makefile, is source)."""
    path = Path(name)
    if set(path.parts[:-1]) & set(GENERATED_DIRS):
        return True
    return bool(path.suffix) and path.suffix.lower() not in SOURCE_SUFFIXES


def untracked_advice(names: tuple[str, ...] | list[str], shown: int = 3) -> str:
    """What to do about untracked files a run could not record: ignore the generated, commit the source."""
    generated = [n for n in names if looks_generated(n)]
    source = [n for n in names if not looks_generated(n)]
    advice = []
    if generated:
        patterns = sorted({f"{Path(n).parts[0]}/" if len(Path(n).parts) > 1 else n for n in generated})
        more = f" and {len(patterns) - shown} more" if len(patterns) > shown else ""
        advice.append(f"data or generated files ({', '.join(generated[:shown])}"
                      f"{'...' if len(generated) > shown else ''}): add {', '.join(patterns[:shown])}{more} to "
                      ".gitignore (or keep them outside the repository)")
    if source:
        advice.append(f"source files ({', '.join(source[:shown])}{'...' if len(source) > shown else ''}): "
                      "commit them")
    return "; ".join(advice)


# the instruction sets that decide float bit-identity (torch's kernel choice) and int8 speed (VNNI)
SIMD_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "asimd", "sve")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # bfloat16 arithmetic in hardware: without them bf16 is emulated, slowly


def cpu_info() -> dict[str, object]:
    """The CPU a figure was measured on: model, cores, torch's kernel capability, the relevant SIMD flags."""
    import torch

    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass  # not Linux: the model from platform, no flags
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": sorted(flags & set(SIMD_FLAGS)),
    }


def training_precision(requested: str, device: str, cpu: dict[str, object] | None = None) -> tuple[str, str]:
    """The precision a run trains in, and why: ``auto`` is bf16 on a CPU with bf16 instructions (or a GPU that
    supports it; fp16 on a GPU without bf16), fp32 elsewhere; an explicit precision is taken as asked."""
    import torch

    if requested != "auto":
        return requested, "asked for"
    if device == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "the GPU supports it"
        return "fp16", "the GPU lacks bf16: float16 with loss scaling"
    flags = set((cpu or cpu_info()).get("cpu_flags") or ())  # type: ignore[call-overload]
    found = sorted(flags & set(BF16_FLAGS))
    if found:
        return "bf16", f"the CPU has {' and '.join(found)}"
    return "fp32", "the CPU has no bf16 instructions (avx512_bf16, amx_bf16)"


def has_vnni(cpu: dict[str, object]) -> bool:
    flags = cpu.get("cpu_flags")
    return isinstance(flags, list | tuple | set) and bool(set(flags) & set(VNNI_FLAGS))


@functools.lru_cache(maxsize=1)
def installed_packages() -> tuple[str, ...]:
    """name==version of every installed distribution; fixed for a process's life (0.5 s to list on a small CPU)."""
    return tuple(sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]))


def environment(threads: int) -> dict[str, object]:
    """Python, torch, platform, CPU/GPU and installed packages (never environment variables)."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "trainlab": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": metadata.version("numpy"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        **cpu_info(),
        "torch_threads": threads,
        "cuda": torch.version.cuda if cuda else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "packages": list(installed_packages()),
    }
