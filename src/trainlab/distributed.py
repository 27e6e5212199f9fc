"""Training on several processes: torch.distributed's DistributedDataParallel, one process per rank.

torchrun (or `trainlab train --nproc N`, which runs torchrun's own launcher) starts the processes and sets
RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous in their environment. Rank 0 leads: it reads the config and a
resumed run, records, and writes every file; it hands the others what they need (``Ranks.share``). The other
ranks follow: they train their shard of every batch and write nothing. Gradients are averaged by DDP's
all-reduce (gloo on CPU, NCCL on CUDA); every collective has a timeout, so a rank that stops answering ends
the run instead of hanging it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import torch
from torch import nn

from trainlab.errors import ConfigError

TIMEOUT_ENV = "TRAINLAB_COLLECTIVE_TIMEOUT"  # seconds a collective may wait for the other ranks
DEFAULT_TIMEOUT_S = 300.0
RUN_ID_ENV = "TRAINLAB_RUN_ID"  # the run id `trainlab train --nproc` chose, so it can name the run if a rank dies
LAUNCHER_ENV = "TRAINLAB_LAUNCHER"  # set by `--nproc`'s launcher: it names a rank that died, so rank 0 need not
RANK_STREAM = 104_729  # offsets a rank's dropout and augmentation seeds from rank 0's (rank 0 draws what one process drew)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes; ``Ranks()`` is a run on one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = ""
    hosts: tuple[str, ...] = ()

    @property
    def leads(self) -> bool:
        """Rank 0: the one that records and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (the others pass None)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value if self.leads else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def total(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``values`` over the ranks (``values`` itself on one process)."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(values)
        return values

    def mean(self, value: torch.Tensor) -> float:
        """A scalar's mean over the ranks (its value on one process)."""
        return value.item() if not self.distributed else self.total(value.clone()).item() / self.world_size

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch of indices: every world_size-th, from its rank (DistributedSampler's
        split); a batch that does not divide is padded with its own first indices, so every rank steps."""
        if not self.distributed:
            return batch
        short = -len(batch) % self.world_size
        if short:
            batch = torch.cat([batch, batch.repeat(-(-short // len(batch)))[:short]])
        return batch[self.rank::self.world_size]

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` under DDP (its gradients all-reduced), or ``model`` itself on one process."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        # buffers (BatchNorm's statistics) are not broadcast at every step: only rank 0's model is validated and saved
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       forward_sync_buffers=False)

    def resume_hint(self, run_id: str) -> str:
        """The command that continues this run after it was stopped: the same processes (on every machine)."""
        machines = self.world_size // max(1, self.local_world_size)
        if machines <= 1:
            return f"`trainlab train --resume {run_id} --nproc {self.world_size}`"
        return (f"`trainlab train --resume {run_id} --nproc {self.local_world_size} --nnodes {machines} "
                "--rdzv-endpoint HOST:PORT` on every machine")

    def seed_offset(self) -> int:
        return RANK_STREAM * self.rank

    def tags(self, batch_size: int) -> dict[str, str]:
        """What the run records about its processes (their number alone, 1, on one process)."""
        if not self.distributed:  # said too, so a run resumed on one process does not keep its first N's tags
            return {"distributed.world_size": "1", "distributed.backend": "none",
                    "distributed.hosts": socket.gethostname(), "distributed.batch_per_rank": str(batch_size)}
        return {"distributed.world_size": str(self.world_size), "distributed.backend": self.backend,
                "distributed.hosts": ",".join(self.hosts),
                "distributed.batch_per_rank": str(-(-batch_size // self.world_size))}


_LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "timed out", "Timed out")


def lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another rank died or did not answer in time (torch raises
    DistError, or a RuntimeError from gloo's transport)."""
    if any(cls.__name__ == "DistError" for cls in type(exc).__mro__):
        return True
    import torch.distributed as dist

    return (isinstance(exc, RuntimeError) and dist.is_available() and dist.is_initialized()
            and any(text in str(exc) for text in _LOST_PEER))


def check_batch(batch_size: int, world_size: int) -> None:
    """The global batch must give every rank an image per step."""
    if batch_size < world_size:
        raise ConfigError(f"train.batch_size = {batch_size} is smaller than the {world_size} processes: it is the "
                          f"global batch, split among them; set it to a multiple of {world_size}, or use fewer "
                          "processes")


def launched() -> bool:
    """Whether torchrun started this process as one rank of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def timeout_seconds() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        return DEFAULT_TIMEOUT_S


def join() -> Ranks:
    """Join the process group torchrun set up: gloo for CPU tensors, and NCCL for CUDA ones where a GPU is
    present; every rank's host name is gathered for the record."""
    import torch.distributed as dist

    die_with_launcher()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        backend = "cpu:gloo,cuda:nccl"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_seconds()))
    hosts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(hosts, socket.gethostname())
    return Ranks(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                 local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")), backend=backend,
                 hosts=tuple(str(h) for h in hosts))


def leave() -> None:
    """Leave the process group (a no-op if this process never joined one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End a rank's (or the launcher's) process with ``code``: its exit handlers, its output flushed, then
    ``os._exit``. A process that had joined gloo or hosted torchrun's store aborts now and then in C++'s static
    destructors after Python has finished ("terminate called without an active exception", SIGABRT: 1 sweep in 6 on
    this machine), which torchrun reports as a dead rank."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def die_with_launcher() -> None:
    """Have the kernel send this rank SIGTERM when its launcher (torchrun's agent, its parent) dies, even by
    kill -9: the rank then stops as if interrupted (rank 0 marks the run killed) instead of training on, orphaned.
    Linux's prctl(PR_SET_PDEATHSIG); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the call
        os.kill(os.getpid(), signal.SIGTERM)
