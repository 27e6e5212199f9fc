"""`trainlab train --nproc N` (and `sweep --nproc`): torchrun's own launcher, its elastic agent, run in this process.

It checks the options before any process starts, starts the ranks (``distributed.py`` is what each rank does),
waits for them, and turns torchrun's failures into what trainlab says: the rank that died and how
(``RankFailed``), machines that did not meet (``ConfigError``), or rank 0's own exit code when rank 0 said why.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainlab.distributed import LAUNCHER_ENV, RUN_ID_ENV, TIMEOUT_ENV, timeout_seconds
from trainlab.errors import ConfigError, RankFailed

_NNODES = re.compile(r"(\d+)(?::(\d+))?")
_ENDPOINT = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):(\d{1,5})")


@dataclass(frozen=True)
class Launch:
    """How `trainlab train --nproc N` starts its ranks: torchrun's launcher, with torchrun's own options."""

    nproc: int
    nnodes: str = "1"
    rdzv_endpoint: str | None = None
    rdzv_id: str = "trainlab"

    @property
    def machines(self) -> bool:
        """Whether several machines take part (each runs the same command)."""
        return self.nnodes != "1"

    def check(self) -> None:
        """Malformed options as one line, before any process starts."""
        found = _NNODES.fullmatch(self.nnodes)
        if not found or int(found[1]) < 1 or (found[2] is not None and int(found[2]) < int(found[1])):
            raise ConfigError(f"--nnodes {self.nnodes!r} is not a number of machines; give a count (2), or a range "
                              "MIN:MAX for an elastic run (2:4)")
        if self.rdzv_endpoint is not None and (not (ep := _ENDPOINT.fullmatch(self.rdzv_endpoint))
                                               or not 0 < int(ep[2]) < 65536):
            raise ConfigError(f"--rdzv-endpoint {self.rdzv_endpoint!r} is not HOST:PORT; give one machine's address "
                              "and a free port, e.g. node0:29400")
        if self.machines and not self.rdzv_endpoint:
            raise ConfigError(f"--nnodes {self.nnodes} needs --rdzv-endpoint HOST:PORT, the address every machine "
                              "meets at (one of the machines, any free port): see docs/distributed.md")

    def resume_hint(self, run_id: str | None) -> str:
        """The command that continues a run whose rank died, as the user gives it on each machine."""
        if not self.machines:
            return f"`trainlab train --resume {run_id} --nproc {self.nproc}`"
        return (f"`trainlab train --resume RUN --nproc {self.nproc} --nnodes {self.nnodes} --rdzv-endpoint "
                f"{self.rdzv_endpoint}` on every machine, RUN being the run id rank 0's machine printed")

    def torchrun_args(self, command: list[str]) -> list[str]:
        """torchrun's command line for ``command`` (`trainlab train ...` without the launcher's options): machines
        meet within the collective timeout, and a rank asked to stop has SHUTDOWN_S before it is killed."""
        where = (["--rdzv-backend", "c10d", "--rdzv-endpoint", str(self.rdzv_endpoint), "--rdzv-id", self.rdzv_id,
                  "--rdzv-conf", f"join_timeout={timeout_seconds():.0f},read_timeout={min(timeout_seconds(), 60):.0f}"]
                 if self.rdzv_endpoint else ["--standalone"])
        return ["--nproc-per-node", str(self.nproc), "--nnodes", self.nnodes, *where,
                "--shutdown-timeout", str(SHUTDOWN_S), "-m", "trainlab", *command]


SHUTDOWN_S = 10  # torchrun's grace for a rank it stops (rank 0 marks the run killed in it), then SIGKILL


@dataclass(frozen=True)
class LaunchFailed:
    """The rank a failed launch names: the first to fail, and how."""

    rank: int
    pid: int
    how: str
    killed: bool  # by a signal (kill -9, the out-of-memory killer), not an exit code


def first_failure(failures: dict[int, Any]) -> LaunchFailed | int:
    """What ended a launch, from torchrun's failures (rank -> ProcessFailure).

    A rank killed by a signal comes first (the SIGTERM and SIGKILL the agent stops the others with come after it).
    Then rank 0's own exit code: it said why in its line (2: bad input; 4: another rank stopped answering), or
    printed its traceback (1). Rank 0's 4 means a rank died, though: the rank that failed by itself is named.
    Exit code 4 everywhere: this machine's ranks lost a rank on another machine.
    """
    first = min(failure.timestamp for failure in failures.values())
    killed = sorted((failure.exitcode == -signal.SIGTERM, failure.timestamp, rank)
                    for rank, failure in failures.items() if failure.exitcode < 0 and failure.timestamp <= first + 1)
    by_itself = [rank for rank, failure in failures.items() if rank != 0 and failure.exitcode > 0
                 and failure.exitcode != RankFailed.exit_code]  # not a follower that lost rank 0
    lead = failures.get(0)
    if not killed and lead is not None and lead.exitcode > 0 and not (lead.exitcode == RankFailed.exit_code
                                                                      and by_itself):
        return int(lead.exitcode)
    if not killed and not by_itself and all(f.exitcode == RankFailed.exit_code for f in failures.values()):
        return LaunchFailed(-1, 0, "", False)  # ranks on another machine died or went silent
    rank = killed[0][2] if killed else min(by_itself or failures)
    failure = failures[rank]
    how = (f"was killed by {failure.signal_name()}" if failure.exitcode < 0
           else f"failed with exit code {failure.exitcode} (its output is above)")
    return LaunchFailed(rank, failure.pid, how, failure.exitcode < 0)


def launch(spec: Launch, command: list[str], run_id: str | None = None,
           again: Callable[[], str] | None = None) -> int:
    """Run ``command`` on ``spec.nproc`` ranks under torchrun's elastic agent (in this process) and wait for them;
    the exit code. ``run_id`` is the run the ranks train (rank 0 takes it); ``again`` says, once a rank died, what
    continues the work.

    The ranks print their own lines (rank 0 its progress and errors). A rank that died of a signal, or of an error it
    could not report, raises RankFailed naming it (the agent has stopped every other rank by then); machines that
    do not meet raise ConfigError. Otherwise rank 0's exit code is returned: it said why.
    """
    import logging

    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous import RendezvousError

    spec.check()
    for name in [*logging.root.manager.loggerDict, "torch.distributed.run"]:  # trainlab says what happened
        if name.startswith(("torch.distributed.elastic", "torch.distributed.run")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    if not spec.machines:  # this launcher sees every rank: it names the one that died (rank 0 need not)
        os.environ[LAUNCHER_ENV] = "1"
    if run_id:
        os.environ[RUN_ID_ENV] = run_id
    again = again or (lambda: spec.resume_hint(run_id))
    if os.environ.get("TORCH_CPP_LOG_LEVEL") == "FATAL":  # the launcher's own store noise only: ranks log errors
        os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // spec.nproc)))
    started = time.monotonic()
    try:
        torchrun.run(torchrun.parse_args(spec.torchrun_args(command)))
    except SignalException as exc:  # Ctrl-C or SIGTERM on the launcher: the agent stopped every rank
        return 128 + int(exc.sigval)
    except RendezvousError as exc:
        said = re.sub(r"\s+", " ", str(exc)).strip()[:200]
        why = type(exc).__name__ + (f": {said}" if said and said != type(exc).__name__ else "")
        raise ConfigError(f"the {spec.nnodes} machines could not meet, or lost each other, at {spec.rdzv_endpoint} "
                          f"after {time.monotonic() - started:.0f} s ({why}); run the same command with "
                          f"--nnodes {spec.nnodes} on every machine, check that each reaches {spec.rdzv_endpoint} "
                          f"(host, port, firewall) and that none was stopped, or raise {TIMEOUT_ENV}") from None
    except ChildFailedError as exc:
        found = first_failure(exc.failures)
        if isinstance(found, int):
            return found
        if found.rank < 0:
            raise RankFailed(f"a rank on another machine died or stopped answering; this machine's ranks were "
                             f"stopped. Continue with {again()}") from None
        raise RankFailed(f"rank {found.rank} (pid {found.pid} on {socket.gethostname()}) {found.how}; every rank "
                         f"was stopped. Continue with {again()}"
                         + (" (killed for memory? fewer processes or a smaller train.batch_size)" if found.killed
                            else "")) from None
    return 0
