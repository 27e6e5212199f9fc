"""What the benchmark scripts share: the CPU line every figure is printed under, and the usual start."""

from __future__ import annotations

import argparse
import os


def cpu_line() -> str:
    """'CPU: AMD EPYC (AVX512, 2 cores)': float results and speeds are only comparable per CPU capability."""
    from trainlab.provenance import environment

    env = environment(os.cpu_count() or 1)
    return f"CPU: {env['cpu_model']} ({env['cpu_capability']}, {env['cpu_count']} cores)"


def start(doc: str, skip_fashion: bool = True) -> argparse.Namespace:
    """Parse the common options and print the CPU line."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    if skip_fashion:
        parser.add_argument("--skip-fashion", action="store_true", help="Leave out the Fashion-MNIST run.")
    args = parser.parse_args()
    print(cpu_line())
    return args
