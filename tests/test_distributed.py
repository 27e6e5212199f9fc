"""Training on several processes: DDP over torch.distributed, started by torchrun, gloo on this CPU.

Two ranks on digits: one record (rank 0's), test accuracy within the seed spread of one process with
the same global batch, kill -9 of rank 1 mid-epoch and `--resume` to the same result, Ctrl-C, sweeps.
The CUDA tests run where a GPU is attached and say why they skip elsewhere.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from conftest import REPO
from mlflow import MlflowClient
from wandb_reader import offline_run_file, read_offline_run

from trainlab.config import load_config
from trainlab.distributed import Ranks
from trainlab.experiment import run_experiment

TRAINLAB = str(Path(sys.executable).with_name("trainlab"))
DIGITS = ["train.epochs=4"]  # the quickstart: digits, global batch 64
no_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine: the CUDA path "
                            "(NCCL, autocast, one GPU per rank) runs only where torch sees one")


def trainlab(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([TRAINLAB, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def mlflow_runs() -> list[Any]:
    client = MlflowClient(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def only_run_id() -> str:
    (run_dir,) = Path("runs").iterdir()
    return run_dir.name


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def no_rank_left() -> bool:
    """No process of a trainlab rank is alive (the launcher's children are gone with it)."""
    for _ in range(50):
        if not [p for p in psutil.process_iter(["cmdline"]) if "-m trainlab" in " ".join(p.info["cmdline"] or [])
                and p.info["cmdline"] and p.pid != os.getpid() and os.getcwd() in _cwd(p)]:
            return True
        time.sleep(0.1)
    return False


def _cwd(process: psutil.Process) -> str:
    try:
        return process.cwd()
    except psutil.Error:
        return ""


# -- the shard each rank trains ------------------------------------------------------------------


@pytest.mark.parametrize("size, world", [(64, 2), (7, 2), (3, 4), (10, 3)])
def test_the_ranks_shards_cover_the_global_batch_once_padded_like_distributed_sampler(size: int, world: int) -> None:
    batch = torch.randperm(100)[:size]
    shards = [Ranks(rank=r, world_size=world).shard(batch) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # every rank steps, on as many images
    assert set(torch.cat(shards).tolist()) == set(batch.tolist())  # each image is in a shard; padding repeats only
    assert len(torch.cat(shards)) == size + (-size % world)
    assert torch.equal(shards[0], batch[0::world][: len(shards[0])])  # DistributedSampler's split: every world-th
    assert torch.equal(Ranks().shard(batch), batch)  # one process: the batch itself


# -- two ranks, one record ---------------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_make_one_record_within_the_seed_spread_of_one_process() -> None:
    done = trainlab("train", *DIGITS, "--nproc", "2")  # MLflow and W&B (offline), the report page
    assert done.returncode == 0, done.stderr
    assert "2 processes (gloo)" in done.stdout and "Traceback" not in done.stderr
    (run,) = mlflow_runs()  # exactly one MLflow run, one run folder, one W&B run
    run_id = only_run_id()
    assert run.info.status == "FINISHED" and run.data.tags["trainlab_run_id"] == run_id
    tags = run.data.tags
    assert tags["distributed.world_size"] == "2" and tags["distributed.backend"] == "gloo"
    assert len(tags["distributed.hosts"].split(",")) == 2 and tags["distributed.batch_per_rank"] == "32"
    assert run.data.params["train.batch_size"] == "64"  # the global batch
    assert len(list(Path("wandb").glob("offline-run-*"))) == 1
    wandb_run = read_offline_run(offline_run_file(Path.cwd(), run_id))
    assert wandb_run.summary["test_accuracy"] == pytest.approx(run.data.metrics["test_accuracy"])
    page = (Path("runs") / run_id / "report.html").read_text()
    assert "processes</b> 2 on " in page and "(gloo), 32 images each per step" in page  # the page says how it trained
    # train metrics are reduced over both shards: the epoch saw every training image once
    client = MlflowClient(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2, 3, 4]

    # one process, same config and global batch, five seeds: the 2-process accuracy is one of that family
    one = [run_experiment(load_config(None, [*DIGITS, f"seed={seed}", "tracking.trackers=[]", "report=false"]),
                          trackers=[]).test.metrics["accuracy"] for seed in range(5)]
    mean, spread = statistics.fmean(one), statistics.stdev(one)
    assert abs(run.data.metrics["test_accuracy"] - mean) <= max(3 * spread, 2 / 360), (run.data.metrics, one)


@pytest.mark.slow
def test_rank_1_killed_mid_epoch_stops_every_rank_and_resume_ends_as_if_never_killed() -> None:
    uninterrupted = trainlab("train", *DIGITS, "--nproc", "2", "--tracker", "none", "output_dir=whole")
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    whole = uninterrupted.stdout.split("test accuracy")[1].split("(")[0]

    started = time.monotonic()
    killed = trainlab("train", *DIGITS, "--nproc", "2", "--tracker", "mlflow",
                      env={"TRAINLAB_FAILPOINT": "mid-epoch", "TRAINLAB_FAILPOINT_RANK": "1"})
    assert killed.returncode == 4, killed.stderr  # RankFailed
    assert time.monotonic() - started < 60
    run_id = only_run_id()
    last = killed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: rank 1 ") and "killed by SIGKILL" in last, killed.stderr
    assert f"trainlab train --resume {run_id} --nproc 2" in last and "Traceback" not in killed.stderr
    (run,) = mlflow_runs()
    assert run.info.status == "KILLED"
    assert no_rank_left()

    resumed = trainlab("train", "--resume", run_id, "--nproc", "2")
    assert resumed.returncode == 0, resumed.stderr
    (run,) = mlflow_runs()
    assert run.info.status == "FINISHED"
    assert resumed.stdout.split("test accuracy")[1].split("(")[0] == whole  # same N: the same result, to the digit


@pytest.mark.slow
def test_a_rank_killed_before_the_first_checkpoint_points_at_the_same_command_not_a_resume() -> None:
    killed = trainlab("train", "train.epochs=1", "train.batch_size=62", "--nproc", "2", "--tracker", "none",
                      env={"TRAINLAB_FAILPOINT": "mid-epoch", "TRAINLAB_FAILPOINT_RANK": "1"})
    assert killed.returncode == 4
    assert "does not divide among 2 processes" not in killed.stderr  # 62 does
    last = killed.stderr.strip().splitlines()[-1]
    assert "Continue with the same command: the run had no checkpoint to resume from yet" in last, killed.stderr


@pytest.mark.slow
def test_ctrl_c_on_the_launcher_stops_every_rank_and_the_run_continues_on_another_n() -> None:
    launcher = subprocess.Popen([TRAINLAB, "train", "train.epochs=12", "--nproc", "2", "--tracker", "mlflow",
                                 "--log-interval", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    assert launcher.stdout is not None
    for line in launcher.stdout:  # the first epoch has ended: a checkpoint to resume from
        if re.match(r"epoch +1/12 +loss", line):
            break
    launcher.send_signal(signal.SIGINT)
    out, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 130, err
    run_id = only_run_id()
    assert f"trainlab train --resume {run_id} --nproc 2" in err and "Traceback" not in err
    (run,) = mlflow_runs()
    assert run.info.status == "KILLED"
    assert no_rank_left()

    # a different N continues it too, said to be not bit-identical
    one = trainlab("train", "--resume", run_id)
    assert one.returncode == 0, one.stderr
    assert "trained on 2 process(es) and continues on 1" in one.stderr and "not bit-identical" in one.stderr
    (run,) = mlflow_runs()
    assert run.info.status == "FINISHED" and run.data.tags["distributed.world_size"] == "1"


@pytest.mark.slow
@pytest.mark.parametrize("args, said", [
    (["train.epochs=0"], "train.epochs"),
    (["train.batch_size=1"], "train.batch_size = 1 is smaller than the 2 processes"),
    (["--nnodes", "2"], "--rdzv-endpoint HOST:PORT"),
    (["--nnodes", "abc", "--rdzv-endpoint", "127.0.0.1:29499"], "--nnodes 'abc' is not a number of machines"),
    (["--rdzv-endpoint", "nohostport"], "--rdzv-endpoint 'nohostport' is not HOST:PORT"),
])
def test_bad_input_is_one_line_before_any_rank_starts(args: list[str], said: str) -> None:
    bad = trainlab("train", "--nproc", "2", *args)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and said in bad.stderr, bad.stderr
    assert not Path("runs").exists() and not Path("mlruns").exists()


@pytest.mark.slow
def test_bad_input_a_rank_meets_is_its_one_line_and_exit_2() -> None:
    """rank 0 says it; the other rank, which lost rank 0, is not reported as a failure of its own."""
    bad = trainlab("train", "--nproc", "2", "data.name=imagefolder", "data.path=/nope")
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip().splitlines() == ["error: data.path = '/nope' is not a folder; point it at a folder "
                                               "of class subfolders"]


@pytest.mark.slow
def test_machines_that_never_meet_end_in_one_line_within_the_timeout() -> None:
    started = time.monotonic()
    alone = trainlab("train", "--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
                     env={"TRAINLAB_COLLECTIVE_TIMEOUT": "5"})
    assert alone.returncode == 2 and time.monotonic() - started < 60
    (line,) = alone.stderr.strip().splitlines()
    assert line.startswith("error: the 2 machines could not meet, or lost each other, at 127.0.0.1:"), line


@pytest.mark.slow
def test_rank_0_killed_leaves_no_running_run_and_the_launcher_killed_stops_every_rank() -> None:
    killed = trainlab("train", *DIGITS, "--nproc", "2", "--tracker", "mlflow",
                      env={"TRAINLAB_FAILPOINT": "mid-epoch", "TRAINLAB_FAILPOINT_RANK": "0"})
    assert killed.returncode == 4 and "rank 0 " in killed.stderr and "SIGKILL" in killed.stderr, killed.stderr
    (run,) = mlflow_runs()
    assert run.info.status == "KILLED"  # marked by the launcher: rank 0 could not
    assert no_rank_left()

    launcher = subprocess.Popen([TRAINLAB, "train", "train.epochs=500", "--nproc", "2", "--tracker", "mlflow",
                                 "--log-interval", "0", "output_dir=second"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    assert launcher.stdout is not None
    for line in launcher.stdout:
        if re.match(r"epoch +1/500 +loss", line):
            break
    launcher.kill()  # kill -9: the kernel tells the ranks (their parent died), and they stop as if interrupted
    launcher.wait()
    assert no_rank_left()
    (second,) = Path("second").iterdir()
    statuses = {r.data.tags["trainlab_run_id"]: r.info.status for r in mlflow_runs()}
    assert statuses[second.name] == "KILLED"


@pytest.mark.slow
def test_a_sweep_trains_each_trial_on_two_processes(tmp_path: Path) -> None:
    sweep = tmp_path / "lr.yaml"
    sweep.write_text("method: grid\nmetric: {name: val_accuracy, goal: maximize}\n"
                     "parameters:\n  train.optimizer.lr: {values: [0.01, 0.03]}\n")
    done = trainlab("sweep", str(sweep), "train.epochs=2", "--nproc", "2", "--tracker", "mlflow")
    assert done.returncode == 0, done.stderr
    trials = [r for r in mlflow_runs() if "distributed.world_size" in r.data.tags]
    assert len(trials) == 2 and {r.data.tags["distributed.world_size"] for r in trials} == {"2"}
    assert {r.info.status for r in mlflow_runs()} == {"FINISHED"}  # the trials and the sweep's parent
    both = trainlab("sweep", str(sweep), "--workers", "2", "--nproc", "2")
    assert both.returncode == 2 and "once per worker" in both.stderr


# -- precision and device -----------------------------------------------------------------------------


@pytest.mark.slow
def test_fp16_trains_with_loss_scaling_and_resumes_with_its_scale() -> None:
    cfg = load_config(None, ["train.epochs=2", "train.precision=fp16", "tracking.trackers=[]", "report=false"])
    out = run_experiment(cfg, trackers=[])
    last = torch.load(out.result.last_checkpoint, weights_only=False)
    assert last["training"]["scaler"]["scale"] > 0  # the GradScaler's state, for --resume
    assert out.test.metrics["accuracy"] > 0.5
    assert run_experiment(cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 3})}),
                          trackers=[], resume=last, run_id=out.run_id).result.history[-1]["val_accuracy"] > 0.5


@no_gpu
def test_cuda_auto_trains_on_the_gpu_with_the_precision_it_supports() -> None:
    done = trainlab("train", "train.epochs=2", "device=auto", "train.precision=auto", "--tracker", "mlflow")
    assert done.returncode == 0, done.stderr
    (run,) = mlflow_runs()
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"  # fp16 with the GradScaler's loss scaling
    assert run.data.tags["device"] == "cuda" and run.data.tags["precision"] == expected
    assert run.data.metrics["test_accuracy"] > 0.5


@no_gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="fewer than 2 CUDA GPUs: NCCL needs one per rank")
def test_two_gpus_train_one_run_over_nccl() -> None:
    done = trainlab("train", *DIGITS, "device=cuda", "--nproc", "2", "--tracker", "mlflow")
    assert done.returncode == 0, done.stderr
    (run,) = mlflow_runs()
    assert run.data.tags["distributed.backend"] == "cpu:gloo,cuda:nccl" and run.data.tags["device"] == "cuda:0"


# -- the commands docs/distributed.md shows ------------------------------------------------------------


@pytest.mark.slow
def test_the_torchrun_form_and_two_machines_meeting_at_an_endpoint_train_as_documented() -> None:
    os.symlink(REPO / "configs", "configs")
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    done = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "trainlab", "train", "-c",
                           "configs/quickstart.yaml", "threads=1", "train.epochs=2", "--tracker", "mlflow"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 processes (gloo), 1 thread" in done.stdout and "warning" not in done.stderr
    (run,) = mlflow_runs()
    assert run.data.tags["distributed.world_size"] == "2"

    # two "machines" (here: two commands on this one) meeting at a c10d rendezvous endpoint
    port = free_port()
    machine = [TRAINLAB, "train", "-c", "configs/quickstart.yaml", "train.epochs=2", "threads=1", "--tracker",
               "mlflow", "--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}"]
    both = [subprocess.Popen(machine, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    assert sum("recorded:" in out for out, _ in outputs) == 1  # rank 0's machine alone records
    runs = [r for r in mlflow_runs() if r.info.run_id != run.info.run_id]
    assert len(runs) == 1 and runs[0].data.tags["distributed.world_size"] == "2"
