"""What DDP costs and gives on this CPU: training images/s of 1 process x 1 thread, 1 process x 2 threads and
2 processes x 1 thread (`trainlab train --nproc 2`, gloo), and the all-reduce time per step.

Each row is a fresh `trainlab train` (trackers off), its figure the median of the epochs' training images/s
(every rank's images, per second of the epoch). The all-reduce row times what DDP adds to each step: gloo's
all-reduce of a gradient the size of the model's, between 2 processes started by torchrun (median of 200).
On 2 cores DDP cannot be faster than one process using both: the table shows its overhead as it is.

    python bench/distributed.py [--epochs 2] [--skip-fashion]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import print_cpu_line, run_main

REPO = Path(__file__).resolve().parents[1]
TRAINLAB = str(Path(sys.executable).with_name("trainlab"))
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
SHAPES = {  # name: (config, overrides)
    "quickstart (digits 8x8, `small` CNN, 6k parameters, batch 32)": ("quickstart.yaml", ["train.epochs={epochs}"]),
    "fashion_fast (Fashion-MNIST 28x28, `fast` CNN, 50k parameters, batch 128, bf16 where the CPU has it)":
        ("fashion_fast.yaml", ["train.epochs={epochs}"]),
}
LAYOUTS = (("1 process x 1 thread", 1, 1), ("1 process x 2 threads", 1, 2), ("2 processes x 1 thread (DDP, gloo)", 2, 1))


def images_per_second(work: Path, config: str, overrides: list[str], nproc: int, threads: int) -> float:
    """The median training images/s over the epochs of one run."""
    out = work / f"{config}-{nproc}-{threads}"
    subprocess.run([TRAINLAB, "train", "-c", str(REPO / "configs" / config), *overrides, f"threads={threads}",
                    f"output_dir={out}", "-q", "-t", "none", "report=false", "--nproc", str(nproc)],
                   cwd=work, check=True, capture_output=True)
    (run_dir,) = out.iterdir()
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return statistics.median(h["images_per_second"] for h in history if "images_per_second" in h)


def allreduce_ms(numel: int, steps: int = 200) -> float:
    """Median ms of one gloo all-reduce of ``numel`` float32 values between 2 processes (torchrun)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "ms.txt"
        subprocess.run([TORCHRUN, "--standalone", "--nproc-per-node", "2", __file__, "--allreduce-worker",
                        str(numel), str(steps), str(result)], check=True, capture_output=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        return float(result.read_text())


def allreduce_worker(numel: int, steps: int, result: Path) -> None:
    """One rank of ``allreduce_ms``: what DDP's reducer does once per step, timed alone."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    gradient = torch.randn(numel)
    times = []
    for _ in range(steps + 20):
        dist.barrier()
        started = time.perf_counter()
        dist.all_reduce(gradient)
        times.append(time.perf_counter() - started)
    if dist.get_rank() == 0:
        result.write_text(f"{statistics.median(times[20:]) * 1000:.4f}")
    dist.destroy_process_group()


def parameters_of(config: str) -> int:
    from trainlab.config import load_config
    from trainlab.models import count_parameters, create_model

    cfg = load_config(REPO / "configs" / config, [])
    shape = (1, 28, 28) if "fashion" in config else (1, 8, 8)
    return count_parameters(create_model(cfg.model, shape, 10, [0.0], [1.0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--skip-fashion", action="store_true")
    args = parser.parse_args()
    print_cpu_line()
    from trainlab.provenance import cpu_info, training_precision

    cpu = cpu_info()
    print(f"flags: {', '.join(cpu['cpu_flags'])}; train.precision: auto picks "  # type: ignore[arg-type]
          f"{' because '.join(training_precision('auto', 'cpu', cpu))}")
    print(f"training images/s, median of {args.epochs} epochs, one fresh `trainlab train` per row, trackers off:")
    with tempfile.TemporaryDirectory() as tmp:
        for shape, (config, overrides) in SHAPES.items():
            if args.skip_fashion and "fashion" in config:
                continue
            print(f"  {shape}:")
            rates = []
            for label, nproc, threads in LAYOUTS:
                rates.append(images_per_second(Path(tmp), config, [o.format(epochs=args.epochs) for o in overrides],
                                               nproc, threads))
                print(f"    {label:38s} {rates[-1]:9,.0f} images/s  ({rates[-1] / rates[0]:.2f}x)")
            from trainlab.config import load_config

            batch = load_config(REPO / "configs" / config, []).train.batch_size
            numel, ms = parameters_of(config), allreduce_ms(parameters_of(config))
            print(f"    all-reduce of its {numel:,} gradients (gloo, 2 processes): {ms:.3f} ms per step, "
                  f"{ms / (1000 * batch / rates[-1]):.0%} of a DDP step ({1000 * batch / rates[-1]:.2f} ms for "
                  f"{batch} images)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--allreduce-worker":
        allreduce_worker(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
    else:
        run_main("distributed", main)
