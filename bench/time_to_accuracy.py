"""Time to Fashion-MNIST test accuracy: trainlab's preset against the PyTorch MNIST example.

Each training runs in its own process, on the same data, with the same thread
count. After every epoch the test accuracy is measured (that evaluation is not
counted); a run's time to X% is its cumulative training time (trainlab's
includes its per-epoch validation) at the first epoch that ends at X% or more.

    python bench/time_to_accuracy.py [--seeds 0 1 2] [--reference-seeds 0] [--budget 300]
                                     [--config configs/fashion_fast.yaml]
                                     [--long-config configs/fashion_accurate.yaml]
                                     [--dataset fashion-mnist] [--data-dir data] [--threads 2] [--save]

Prints: seconds to 90/91/92/93%, ratio to the reference, images/s, peak RSS,
and the best accuracy each reaches within the budget (5 minutes by default),
then the preset's inference images/s on the 10k test images, fp32 and int8 (`--int8`);
the long preset (seed 0) shows what trainlab reaches when given the budget.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import cpu_kind, print_cpu_line, run_main

THRESHOLDS = (0.90, 0.91, 0.92, 0.93)
HERE = Path(__file__).resolve().parent


def load(dataset: str, data_dir: str, val_fraction: float):  # noqa: ANN201
    from trainlab.config import DataConfig
    from trainlab.data import create_dataset, split_dataset

    ds = create_dataset(DataConfig(name=dataset, data_dir=Path(data_dir), download=False))
    return ds, split_dataset(ds, val_fraction, 0) if val_fraction else None


def child_reference(args: argparse.Namespace) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    from reference import reference_accuracy, train_reference

    torch.set_num_threads(args.threads)
    ds, _ = load(args.dataset, args.data_dir, 0)
    epochs: list[dict] = []
    elapsed = [0.0]

    def after_epoch(epoch: int, model: torch.nn.Module, seconds: float) -> bool:
        elapsed[0] += seconds
        acc = reference_accuracy(model, ds.test_x, ds.test_y)
        epochs.append({"epoch": epoch, "seconds": elapsed[0], "accuracy": acc, "images_per_second": len(ds.train_y) / seconds})
        print(json.dumps(epochs[-1]), file=sys.stderr, flush=True)
        return elapsed[0] < args.budget

    train_reference(ds.train_x, ds.train_y, epochs=100, seed=args.seed, on_epoch_end=after_epoch)
    return {"epochs": epochs}


def child_trainlab(args: argparse.Namespace) -> dict:
    from trainlab.config import load_config
    from trainlab.evaluate import evaluate, evaluate_int8
    from trainlab.experiment import build_model, configure_torch
    from trainlab.provenance import training_precision
    from trainlab.quantize import CALIBRATION_IMAGES
    from trainlab.train import TrainCallbacks, train

    overrides = [f"seed={args.seed}", f"threads={args.threads}", f"data.data_dir={args.data_dir}",
                 f"data.name={args.dataset}", "tracking.trackers=[]"]
    cfg = load_config(Path(args.config), overrides)
    device, _ = configure_torch(cfg)
    precision, _ = training_precision(cfg.train.precision, device.type)
    ds, splits = load(args.dataset, args.data_dir, cfg.data.val_fraction)
    model = build_model(cfg, ds, splits)
    epochs: list[dict] = []
    elapsed = [0.0]

    class AfterEpoch(TrainCallbacks):
        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            elapsed[0] += metrics["epoch_seconds"]
            ev = evaluate(model, ds.test_x, ds.test_y, ds.class_names, cfg.train.eval_batch_size)
            epochs.append({"epoch": epoch, "seconds": elapsed[0], "accuracy": ev.metrics["accuracy"],
                           "images_per_second": metrics["images_per_second"],
                           "inference_images_per_second": ev.metrics["images_per_second"]})
            print(json.dumps(epochs[-1]), file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        train(model, splits, cfg.train, seed=cfg.seed, checkpoint_dir=Path(tmp), checkpoint_meta={},
              callbacks=AfterEpoch(), augment=cfg.data.augment, sampler=cfg.data.sampler, precision=precision)
    int8 = evaluate_int8(model, ds.test_x, ds.test_y, ds.class_names, ds.train_x[:CALIBRATION_IMAGES],
                         cfg.train.eval_batch_size).metrics
    return {"epochs": epochs, "precision": precision, "int8": {"images_per_second": int8["images_per_second"],
                                       "fp32_images_per_second": int8["fp32_images_per_second"],
                                       "label_agreement_fp32": int8["label_agreement_fp32"],
                                       "accuracy": int8["accuracy"], "fp32_accuracy": int8["fp32_accuracy"]}}


def run_child(kind: str, seed: int, args: argparse.Namespace, config: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--seed", str(seed), "--budget", str(args.budget),
           "--config", config or args.config, "--dataset", args.dataset, "--data-dir", args.data_dir,
           "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{kind} seed {seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def best_within(result: dict, budget: float) -> float:
    """Best test accuracy of the epochs that ended within the budget (the first epoch at least)."""
    epochs = result["epochs"]
    return max(e["accuracy"] for e in epochs if e["seconds"] <= budget or e is epochs[0])


def time_to(result: dict, threshold: float) -> float:
    return next((e["seconds"] for e in result["epochs"] if e["accuracy"] >= threshold), math.nan)


def fmt(values: list[float], unit: str) -> str:
    """mean±std (sample) of the runs that got there; '—' when none did, 'n/k' when only some did."""
    reached = [v for v in values if not math.isnan(v)]
    if not reached:
        return "—"
    text = f"{reached[0]:.1f}" if len(reached) == 1 else f"{statistics.fmean(reached):.1f}±{statistics.stdev(reached):.1f}"
    return text + unit + ("" if len(reached) == len(values) else f" ({len(reached)}/{len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--reference-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of training for 'best in budget'")
    parser.add_argument("--config", default=str(HERE.parent / "configs" / "fashion_fast.yaml"))
    parser.add_argument("--long-config", default=str(HERE.parent / "configs" / "fashion_accurate.yaml"))
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default=str(Path("data").resolve()))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--child", choices=["reference", "trainlab"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        result = child_reference(args) if args.child == "reference" else child_trainlab(args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(json.dumps(result))
        return

    from trainlab.provenance import cpu_info, training_precision

    print_cpu_line()
    cpu = cpu_info()
    precision, why = training_precision("auto", "cpu", cpu)
    print(f"flags: {', '.join(cpu['cpu_flags'])}; train.precision: auto picks {precision} "  # type: ignore[arg-type]
          f"because {why}")
    print(f"{args.dataset} · {args.threads} threads · budget {args.budget:.0f} s · presets {Path(args.config).name}"
          + (f", {Path(args.long_config).name}" if args.long_config else ""))
    rows: list[tuple[str, list[dict]]] = []
    if not args.skip_reference:
        rows.append(("reference (PyTorch MNIST example)", [run_child("reference", s, args) for s in args.reference_seeds]))
    preset = [run_child("trainlab", s, args) for s in args.seeds]
    rows.append((f"trainlab {Path(args.config).stem}", preset))
    if args.long_config:
        rows.append((f"trainlab {Path(args.long_config).stem}", [run_child("trainlab", args.seeds[0], args, args.long_config)]))

    header = f"{'run':<44} {'seeds':>5} " + " ".join(f"{'to ' + format(t, '.0%'):>11}" for t in THRESHOLDS)
    header += f" {'best in budget':>15} {'train img/s':>12} {'precision':>9} {'peak RSS MB':>12}"
    print(header)
    reference_times = {t: [time_to(r, t) for r in rows[0][1]] for t in THRESHOLDS} if not args.skip_reference else {}
    for name, results in rows:
        times = {t: [time_to(r, t) for r in results] for t in THRESHOLDS}
        best = [best_within(r, args.budget) for r in results]
        ips = statistics.fmean(e["images_per_second"] for r in results for e in r["epochs"])
        rss = max(r["peak_rss_mb"] for r in results)
        print(f"{name:<44} {len(results):>5} " + " ".join(f"{fmt(times[t], ' s'):>11}" for t in THRESHOLDS)
              + f" {fmt([b * 100 for b in best], ' %'):>15} {ips:>12,.0f} {results[0].get('precision', 'fp32'):>9}"
              f" {rss:>12,.0f}")
    if reference_times:
        print("\nratio of mean time to the reference's (lower is better; the target is at most 1/10 at 91%):")
        for name, results in rows[1:]:
            ratios = []
            for t in THRESHOLDS:
                ours = [time_to(r, t) for r in results]
                ref = statistics.fmean(reference_times[t]) if reference_times[t] else math.nan
                mean = statistics.fmean(ours) if not any(math.isnan(v) for v in ours) else math.nan
                ratios.append("—" if math.isnan(mean) or math.isnan(ref) else f"{mean / ref:.3f} (1/{ref / mean:.1f})")
            print(f"  {name:<42} " + "  ".join(f"{format(t, '.0%')}: {r}" for t, r in zip(THRESHOLDS, ratios)))
    train_speed = statistics.fmean(e["images_per_second"] for r in preset for e in r["epochs"])
    infer = statistics.fmean(e["inference_images_per_second"] for r in preset for e in r["epochs"])
    print(f"\ntrainlab inference on the 10k test images ({Path(args.config).stem}, training at {train_speed:,.0f} images/s):")
    print(f"  fp32            {infer:>8,.0f} images/s  {infer / train_speed:.1f}x its training throughput")
    int8 = [r["int8"] for r in preset]
    speed = statistics.fmean(q["images_per_second"] for q in int8)
    agree = statistics.fmean(q["label_agreement_fp32"] for q in int8)
    change = statistics.fmean(q["accuracy"] - q["fp32_accuracy"] for q in int8)
    print(f"  int8 (--int8)   {speed:>8,.0f} images/s  {speed / train_speed:.1f}x; labels agree with fp32 on "
          f"{agree:.2%}, accuracy {change * 100:+.2f} points")

if __name__ == "__main__":
    # one results file per CPU type (docs/speed.md keeps a table for each): time_to_accuracy-amx.txt, ...
    run_main(f"time_to_accuracy-{cpu_kind()}", main)
