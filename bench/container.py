"""The trainer image's figures: build time (cold, and after a source change), size by layer, start time and
the default experiment in a container, with Podman (as root; the base image from docker/local-base.sh, or
--base).

    .venv/bin/python bench/container.py [--base IMAGE] [--cold]

--cold builds once with --no-cache first (minutes: every dependency installed again).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import print_cpu_line, run_main

ROOT = Path(__file__).resolve().parents[1]
PODMAN = ["podman", "--runtime", "/usr/sbin/runc"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
TAG = "localhost/trainlab:bench"


def timed(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args[:6])} ...\n{out.stderr[-3000:]}")
    return time.perf_counter() - started, out.stdout


def build_args(base: str, context: Path, cold: bool) -> list[str]:
    args = [*PODMAN, "build", "--format", "docker", "--network=host", *LIMITS, "-t", TAG, "--build-arg", f"BASE={base}"]
    if Path("/opt/wheels").is_dir():
        args += ["-v", "/opt/wheels:/opt/wheels:ro", "--build-arg", "WHEELS=/opt/wheels", "--build-arg", "TORCH_INDEX="]
    if Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        args += ["-v", "/etc/ssl/certs/ca-certificates.crt:/host-ca.crt:ro", "--build-arg", "PIP_CERT=/host-ca.crt"]
    return args + (["--no-cache"] if cold else []) + [str(context)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="localhost/trainlab-base:bookworm")
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args()
    print_cpu_line()

    with tempfile.TemporaryDirectory() as folder:
        context = Path(folder)
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
        for name in filter(None, files.stdout.split("\0")):
            if (ROOT / name).is_file():
                (context / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, context / name)
        if args.cold:
            print(f"build, no cache:                 {timed(build_args(args.base, context, True))[0]:6.1f} s")
        # podman build --no-cache stores no layers: this build is the one that fills the cache
        print(f"build, caching its layers:       {timed(build_args(args.base, context, False))[0]:6.1f} s")
        with open(context / "src/trainlab/__init__.py", "a") as f:
            f.write(f"# {time.time()}\n")  # a source change: the dependency layer stays cached
        print(f"build after a source change:     {timed(build_args(args.base, context, False))[0]:6.1f} s")

    size = json.loads(timed([*PODMAN, "image", "inspect", TAG])[1])[0]["Size"]
    print(f"image size:                      {size / 1e9:6.2f} GB")
    for line in timed([*PODMAN, "history", "--format", "{{.Size}}\t{{.CreatedBy}}", TAG])[1].splitlines():
        layer, created = line.split("\t", 1)
        if not layer.startswith("0 B"):
            print(f"  layer {layer:>9}  {created.replace('/bin/sh -c ', '')[:90]}")

    run = [*PODMAN, "run", "--rm", "--network=none", *LIMITS, "-e", "WANDB_MODE=offline"]
    imports = "import torch, mlflow, wandb, optuna, sklearn, matplotlib.pyplot, trainlab.experiment"
    starts = [timed([*run, "--entrypoint", "python", TAG, "-c", imports])[0] for _ in range(3)]
    print(f"container start + imports:       {min(starts):6.1f} s (best of 3)")
    with tempfile.TemporaryDirectory() as work:
        shutil.chown(work, 1000, 1000)
        seconds, out = timed([*run, "-v", f"{work}:/work", TAG])
        accuracy = next(line for line in out.splitlines() if line.startswith("test accuracy"))
        print(f"trainlab all (quickstart):       {seconds:6.1f} s   {accuracy[:40]}")


if __name__ == "__main__":
    run_main("container", main)
