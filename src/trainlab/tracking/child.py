"""A backend recorded from a child process, so its Python work does not hold up training.

MLflow and W&B are mostly Python: importing them, MLflow's SQLite store (its ORM), W&B's init, the figures and
the logged model are seconds of work under the interpreter lock, which in-process threads share with training and
the report page. In a child process that work runs on another core.

    Run's worker thread --call--> ChildTracker --pipe--> a child python (child.main): the real tracker
                        <--its result, or its error (type, message, errno)--

Calls are answered one at a time, in order, as they were in-process; an error comes back as an exception of the
same type name and message, so a failure reads as it did. The child ignores Ctrl-C and SIGTERM (the training
process ends the record itself: killed, with the reason) and ends when the pipe closes, which the kernel does
when the training process exits or dies (kill -9); a call sent before the training process died is the last
one done, and nothing is done for a training process that is gone.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.redaction import redact
from trainlab.tracking.base import MetricPoint, RunInfo, Status, Tracker

if TYPE_CHECKING:
    from trainlab.evaluate import Evaluation


class BackendError(Exception):
    """An error the backend raised in its process: the same type name, message and errno."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


_ERROR_TYPES: dict[str, type[BackendError]] = {}


def _error_of(type_name: str, message: str, errno: int | None) -> BackendError:
    kind = _ERROR_TYPES.setdefault(type_name, type(type_name, (BackendError,), {}))
    return kind(message, errno)


_CHILDREN: weakref.WeakSet[ChildTracker] = weakref.WeakSet()
EXIT_GRACE_S = 0.5  # at this process's exit, a child still busy (a call to a server gone silent) gets this long


@atexit.register
def _stop_children() -> None:
    """A child still busy when this process exits (its backend did not finish in time, which the run said) is
    stopped with it, as a thread of this process was: it would hold the terminal's stderr, so a pipeline
    (`trainlab train 2>&1 | tee log`) would wait for its call to time out."""
    children = [t for t in list(_CHILDREN) if t._process is not None]
    for tracker in children:
        if tracker._conn is not None:
            tracker._conn.close()  # an idle child exits at once
    deadline = time.monotonic() + EXIT_GRACE_S
    for tracker in children:
        try:
            tracker._process.wait(max(0.0, deadline - time.monotonic()))  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            tracker._process.kill()  # type: ignore[union-attr]


# the signals the parent handles are ignored before any import: a Ctrl-C while the child still loads its library
# (the whole process group gets it) must not print the import's traceback
CHILD_MAIN = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN)"
              "; import sys; from trainlab.tracking.child import main; main(sys.argv[1:])")

class ChildTracker(Tracker):
    """``inner`` (not started; pickled to the child) run in a child process; this object forwards every call."""

    def __init__(self, inner: Tracker) -> None:
        self.name = inner.name
        self._inner = inner
        self._conn: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._where: str | None = None
        self._lock = threading.Lock()  # one call at a time: prepare's thread and the run's worker share the pipe

    def _connection(self) -> Connection:
        """The child's pipe; the child is started at the first call (prepare, while the data loads)."""
        if self._conn is None or self._conn.closed:  # a new child for each run it records
            ours, theirs = socket.socketpair()
            self._process = subprocess.Popen(
                [sys.executable, "-c", CHILD_MAIN,
                 str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True)
            theirs.close()
            self._conn = Connection(ours.detach())
            # W&B records the command line: the user's (masked), not the child's
            self._conn.send((self._inner, [redact(arg) for arg in sys.argv]))
            weakref.finalize(self, self._conn.close)  # the child ends at EOF; nobody waits for it
            _CHILDREN.add(self)
        return self._conn

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:
            conn = self._connection()
            try:
                conn.send((method, args))
                reply = conn.recv()
            except Exception as exc:
                if not isinstance(exc, EOFError | OSError) and not conn.closed:
                    raise
                code = self._process.poll() if self._process else None  # EOF; or closed under us, at exit
                raise BackendError(f"its recording process ended (exit code {code})") from None
        ok, value, self.degraded, self._where = reply
        if not ok:
            raise _error_of(*value)
        return value

    def prepare(self) -> None:
        try:
            self._call("prepare")
        except Exception:  # noqa: S110 - gone already (this process is exiting: bad input), or start() will say it
            pass

    def start(self, run: RunInfo) -> None:
        self._call("start", run)

    def log_params(self, params: dict[str, str]) -> None:
        self._call("log_params", params)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._call("set_tags", tags)

    def log_metrics(self, points: list[MetricPoint]) -> None:  # type: ignore[override]
        self._call("log_metrics", list(points))

    def replace_history(self, history: list[dict[str, float]]) -> None:  # type: ignore[override]
        self._call("replace_history", list(history))

    def log_summary(self, metrics: dict[str, float]) -> None:
        self._call("log_summary", metrics)

    def log_dict(self, name: str, data: Any) -> None:
        self._call("log_dict", name, data)

    def log_text(self, name: str, text: str) -> None:
        self._call("log_text", name, text)

    def log_evaluation(self, ev: Evaluation, prefix: str) -> None:
        self._call("log_evaluation", ev, prefix)

    def log_model(self, path: Path, metadata: dict[str, Any]) -> None:
        self._call("log_model", path, metadata)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._call("log_artifact", path, artifact_path)

    def finish(self, status: Status, error: str | None = None) -> None:
        """End the run, then the child: its pipe closes, and it exits once its libraries have let go."""
        try:
            self._call("finish", status, error)
        finally:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()

    def note_failures(self, failures: dict[str, str]) -> None:
        self._call("note_failures", failures)

    def where(self) -> str | None:
        return self._where

    def sampled_history(self, key: str) -> list[tuple[int, float]]:
        return self._call("sampled_history", key) if self._conn is not None and not self._conn.closed else []


def serve(conn: Connection, parent: int) -> None:
    """The child's loop: the tracker and the command line first, then calls, each answered with (ok, value or
    error, degraded, where)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the training process ends the record (killed)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    warnings.simplefilter("ignore")  # the training process says what the user needs; nothing of the libraries'
    logging.raiseExceptions = False  # as `trainlab` itself: a log file on a full disk is no traceback per record
    try:
        tracker, sys.argv[:] = conn.recv()
        while True:
            method, args = conn.recv()
            if os.getppid() != parent:
                return  # the training process is gone: its record is not continued by halves
            try:
                reply = (True, getattr(tracker, method)(*args))
            except Exception as exc:
                reply = (False, (type(exc).__name__, str(exc), getattr(exc, "errno", None)))
            try:
                conn.send((*reply, tracker.degraded, tracker.where()))
            except pickle.PicklingError:
                conn.send((False, ("PicklingError", f"{method} returned what cannot be sent back", None),
                           tracker.degraded, tracker.where()))
    except (EOFError, OSError, KeyboardInterrupt):
        return  # the pipe closed: the training process ended or died


def main(argv: list[str]) -> None:
    """The child's entry: its end of the pipe and the training process's pid. Once the pipe closes it exits at
    once: its run is ended (or its training process is gone), and the libraries' exit handlers (W&B's service
    teardown, a garbage collection of everything MLflow built) would only keep a shell pipeline waiting."""
    serve(Connection(int(argv[0])), int(argv[1]))
    sys.stderr.flush()
    os._exit(0)
