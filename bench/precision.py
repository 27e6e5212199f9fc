"""bf16 against fp32 training on this CPU: `configs/fashion_fast.yaml` with `train.precision=fp32` and `=bf16`,
the same seeds; training images/s (median of the epochs) and test accuracy, each a fresh `trainlab train`.

bf16 pays only where the CPU computes it in hardware (avx512_bf16, AMX); the header's CPU line and the flags
printed below say which this is. `train.precision: auto` picks bf16 exactly there.

    python bench/precision.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import print_cpu_line, run_main

REPO = Path(__file__).resolve().parents[1]
TRAINLAB = str(Path(sys.executable).with_name("trainlab"))


def train(work: Path, precision: str, seed: int) -> tuple[float, float]:
    """(median training images/s over the epochs, test accuracy) of one fashion_fast run."""
    out = work / f"{precision}-{seed}"
    subprocess.run([TRAINLAB, "train", "-c", str(REPO / "configs" / "fashion_fast.yaml"), f"seed={seed}",
                    f"train.precision={precision}", f"output_dir={out}", "-q", "-t", "none", "report=false"],
                   cwd=work, check=True, capture_output=True, env={**os.environ})
    (run_dir,) = out.iterdir()
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [h["images_per_second"] for h in history if "images_per_second" in h]
    return statistics.median(rates), json.loads((run_dir / "summary.json").read_text())["test_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    from trainlab.provenance import cpu_info, training_precision

    print_cpu_line()
    cpu = cpu_info()
    print(f"flags: {', '.join(cpu['cpu_flags'])}; train.precision: auto picks "  # type: ignore[arg-type]
          f"{' because '.join(training_precision('auto', 'cpu', cpu))}")
    print("configs/fashion_fast.yaml (2 epochs, `fast` CNN, batch 128), 2 threads, trackers off:")
    with tempfile.TemporaryDirectory() as tmp:
        results = {p: [train(Path(tmp), p, seed) for seed in range(args.seeds)] for p in ("fp32", "bf16")}
    for precision, rows in results.items():
        rates, accuracies = [r for r, _ in rows], [a for _, a in rows]
        print(f"  {precision}: {statistics.median(rates):7,.0f} training images/s (median over seeds), "
              f"test accuracy {statistics.mean(accuracies):.4f} ± {statistics.stdev(accuracies):.4f} "
              f"({', '.join(f'{a:.4f}' for a in accuracies)})")
    speedup = statistics.median(r for r, _ in results["bf16"]) / statistics.median(r for r, _ in results["fp32"])
    print(f"bf16 trains at {speedup:.2f}x the fp32 rate")


if __name__ == "__main__":
    run_main("precision", main)
