"""What the benchmark scripts share: the CPU line every figure is printed under, the usual start, and the
results file the docs include (bench/results/<script>.txt), so a figure in the docs and its source cannot
disagree."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_line() -> str:
    """'CPU: AMD EPYC (AVX512, 2 cores)': float results and speeds are only comparable per CPU capability."""
    from trainlab.provenance import environment

    env = environment(os.cpu_count() or 1)
    return f"CPU: {env['cpu_model']} ({env['cpu_capability']}, {env['cpu_count']} cores)"


def cpu_kind() -> str:
    """The CPU type a figure holds for, as the project tells them apart (speed and bf16 differ between them):
    amx (bf16 and int8 tiles), avx512-bf16, avx512, avx2 or other."""
    from trainlab.provenance import cpu_info

    flags = set(cpu_info()["cpu_flags"])  # type: ignore[call-overload]
    for kind, flag in (("amx", "amx_bf16"), ("avx512-bf16", "avx512_bf16"), ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in flags:
            return kind
    return "other"


_SAVING = False  # a results file is being written: its header names the CPU


def print_cpu_line() -> None:
    """The CPU the figures below were measured on (once: with --save the results file's header already says it)."""
    if not _SAVING:
        print(cpu_line())


def start(doc: str, skip_fashion: bool = True) -> argparse.Namespace:
    """Parse the common options and print the CPU line."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    if skip_fashion:
        parser.add_argument("--skip-fashion", action="store_true", help="Leave out the Fashion-MNIST run.")
    args = parser.parse_args()
    print_cpu_line()
    return args


class _Tee:
    """Writes go to the terminal and to the results file."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def header(script: str) -> str:
    """The lines a results file opens with: when, on which CPU, with what, from which commit, by which command."""
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=RESULTS.parent).stdout.strip() or "unknown"
    argv = " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    return (f"# {time.strftime('%Y-%m-%d %H:%M')} · commit {commit} · python {sys.version.split()[0]} · "
            f"torch {torch.__version__}\n# {argv}\n{cpu_line()}\n")


@contextlib.contextmanager
def results_file(script: str, save: bool) -> Iterator[None]:
    """With ``save``, what the script prints also goes to bench/results/<script>.txt (under a header naming the
    date, CPU, commit and command); the file is replaced only when the script ends without an error."""
    if not save:
        yield
        return
    RESULTS.mkdir(exist_ok=True)
    partial = RESULTS / f".{script}.txt.partial"
    with partial.open("w", encoding="utf-8") as out:
        out.write(header(script))
        terminal, sys.stdout = sys.stdout, _Tee(sys.stdout, out)
        try:
            yield
        finally:
            sys.stdout = terminal
    partial.replace(RESULTS / f"{script}.txt")
    print(f"saved: {RESULTS / f'{script}.txt'}")


def run_main(script: str, main: Callable[[], None]) -> None:
    """The script's ``main``; given ``--save``, what it prints also goes to bench/results/<script>.txt (the docs
    include that file), under a header naming the date, the CPU, the commit and the command."""
    global _SAVING
    save = _SAVING = "--save" in sys.argv[1:]
    with results_file(script, save):
        if save:
            sys.argv.remove("--save")  # the script's own options parse the rest
        main()
