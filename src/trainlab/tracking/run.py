"""One run, recorded by every backend, off the training loop's hot path.

``Run.log_metrics`` only appends to an in-memory buffer (a few microseconds);
``flush`` (at each epoch end) hands the buffer to the backends' workers: one
thread per backend, each calling its backend in order, so a slow or hung
backend (an unreachable server) never holds up the others. A backend that
raises is marked failed and skipped from then on, with a warning; the others
keep recording. Used as a context
manager, the run ends as finished, failed (with the error) or killed
(Ctrl-C / SIGTERM), and ``finish`` waits a bounded time for the queue to drain
(``KILL_WAIT_S`` after Ctrl-C: the user wants the prompt back). The run folder
ends last: it says ``finished`` only once every other backend has confirmed the
end (or given up), so a ``kill -9`` at any moment leaves a run that ``--resume``
completes.
"""

from __future__ import annotations

import errno
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab import failpoints
from trainlab.errors import RunInterrupted
from trainlab.redaction import redact, redact_mapping
from trainlab.tracking.base import MetricPoint, RunInfo, Status, Tracker, says_disk_full

if TYPE_CHECKING:
    from trainlab.evaluate import Evaluation

Warn = Callable[[str], None]
# SQLAlchemy appends the statement, its parameters (a whole tag's text), a link to its docs, a note on autoflush
_SQL_DETAIL = re.compile(r"\s*(\[SQL: .*|\(Background on this error at: [^)]*\)|\(raised as a result of Query-invoked "
                         r"autoflush[^)]*\))")
_DISK_FULL_SAID: set[str] = set()  # backends whose full disk was said: every later run's would say it again
KILL_WAIT_S = 3.0  # after Ctrl-C / SIGTERM, at most this long for the backends to take the end


def prepare_in_background(trackers: Sequence[Tracker], warn: Warn | None = None) -> list[threading.Thread]:
    """Import the client libraries (seconds for each of mlflow and wandb) while the caller loads data: one thread
    per backend, so the second does not wait for the first."""

    def work(tracker: Tracker) -> None:
        try:
            tracker.prepare()
        except Exception as exc:  # start() will fail too and report it; nothing is lost here
            if warn:
                warn(redact(f"{tracker.name}: could not load its client library ({type(exc).__name__}: {exc})"))

    threads = [threading.Thread(target=work, args=(t,), name=f"trainlab-{t.name}-prepare", daemon=True)
               for t in trackers]
    for thread in threads:
        thread.start()
    return threads


class Run:
    def __init__(self, info: RunInfo, trackers: Sequence[Tracker], *, finish_timeout: float = 60.0,
                 warn: Warn | None = None) -> None:
        self.info = info
        self.trackers = list(trackers)
        self.finish_timeout = finish_timeout
        self.status: Status | None = None
        self.failures: dict[str, str] = {}  # backend name -> what went wrong (exit code 3)
        self._broken: set[str] = set()  # backends that failed: they get nothing more
        self._warn = warn or (lambda message: None)
        self._pending: list[MetricPoint] = []
        self._queues: dict[str, queue.Queue[tuple[str, tuple[Any, ...]] | None]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._started = threading.Semaphore(0)  # released once per backend when its start() returns

    @property
    def run_id(self) -> str:
        return self.info.run_id

    @property
    def run_dir(self) -> Path:
        return self.info.run_dir

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Run:
        for t in self.trackers:
            self._queues[t.name] = queue.Queue()
            self._workers[t.name] = threading.Thread(target=self._work, args=(t, self._queues[t.name]),
                                                     name=f"trainlab-{t.name}", daemon=True)
            self._workers[t.name].start()
        self._call("start", self.info)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.finish("finished")
        elif isinstance(exc, KeyboardInterrupt):  # a RunInterrupted too: the record says what the user pressed
            self.finish("killed", "interrupted (KeyboardInterrupt)")
            raise RunInterrupted.of(exc, run_id=self.run_id) from None  # the run's id, for the "resume with" hint
        elif isinstance(exc, SystemExit):
            self.finish("killed", f"interrupted ({type(exc).__name__})")
        else:
            self.finish("failed", f"{type(exc).__name__}: {exc}")

    def finish(self, status: Status, error: str | None = None) -> None:
        """Hand over what is queued and end the run in every backend, the run folder last.

        Waits at most ``finish_timeout`` (``KILL_WAIT_S`` for a killed run); a backend
        that does not make it is reported, not waited for.
        """
        if self.status is not None:
            return
        self.status = status
        wait = min(self.finish_timeout, KILL_WAIT_S) if status == "killed" else self.finish_timeout
        deadline = time.monotonic() + wait
        self.flush()
        error = redact(error) if error else None
        first = [t for t in self.trackers if not t.finishes_last]
        last = [t for t in self.trackers if t.finishes_last]
        self._end(first, status, error, deadline, wait)
        failpoints.reached("tracker-finish")
        for t in last:
            self._queues[t.name].put(("note_failures", (dict(self.failures),)))
        # the last backends get their own short grace even when the others used up the wait
        self._end(last, status, error, max(deadline, time.monotonic() + KILL_WAIT_S), wait)

    def _end(self, trackers: Sequence[Tracker], status: Status, error: str | None, deadline: float,
             wait: float) -> None:
        for t in trackers:
            self._queues[t.name].put(("finish", (status, error)))
            self._queues[t.name].put(None)
        for t in trackers:
            self._workers[t.name].join(max(0.0, deadline - time.monotonic()))
            if self._workers[t.name].is_alive():
                waiting = self._queues[t.name].qsize()
                self.failures.setdefault(t.name, f"did not finish within {wait:g} s")
                self._warn(f"{t.name} did not finish within {wait:g} s ({waiting} calls still queued); its record "
                           f"of run {self.run_id} may be incomplete (raise tracking.finish_timeout if the network "
                           "is slow)")

    def wait_started(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until every backend has started.

        Starting a backend is seconds of CPU (imports, a service process); on a small
        machine it costs less before training than when it competes with the training's
        threads for the cores.
        """
        deadline = time.monotonic() + timeout
        for _ in self.trackers:
            if not self._started.acquire(timeout=max(0.0, deadline - time.monotonic())):
                return

    def where(self) -> list[str]:
        """Where each backend recorded the run (for the user)."""
        return [line for t in self.trackers if t.name not in self._broken and (line := t.where())]

    # -- logging -----------------------------------------------------------------------

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Buffer one step's values; no I/O here."""
        self._pending.append(MetricPoint(step, time.time_ns() // 1_000_000, dict(metrics)))

    def flush(self) -> None:
        """Hand buffered metrics to the backends (called at each epoch end)."""
        if self._pending:
            points, self._pending = self._pending, []
            self._call("log_metrics", points)

    def log_params(self, params: dict[str, str]) -> None:
        self._call("log_params", {k: redact(v) for k, v in params.items()})

    def set_tags(self, tags: dict[str, str]) -> None:
        self._call("set_tags", {k: redact(v) for k, v in tags.items()})

    def replace_history(self, history: Sequence[dict[str, float]]) -> None:
        self._call("replace_history", list(history))

    def log_summary(self, metrics: dict[str, float]) -> None:
        self._call("log_summary", dict(metrics))

    def log_dict(self, name: str, data: Any) -> None:
        self._call("log_dict", name, redact_mapping(data))

    def log_text(self, name: str, text: str) -> None:
        self._call("log_text", name, redact(text))

    def log_evaluation(self, ev: Evaluation, prefix: str) -> None:
        self._call("log_evaluation", ev, prefix)

    def log_model(self, path: Path, metadata: dict[str, Any]) -> None:
        self._call("log_model", path, metadata)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._call("log_artifact", path, artifact_path)

    # -- the worker --------------------------------------------------------------------

    def _call(self, method: str, *args: Any) -> None:
        if method != "log_metrics":
            self.flush()  # metrics logged before this call reach the backends first
        for ops in self._queues.values():
            ops.put((method, args))

    def _work(self, tracker: Tracker, ops: queue.Queue[tuple[str, tuple[Any, ...]] | None]) -> None:
        while (op := ops.get()) is not None:
            method, args = op
            if tracker.name in self._broken:
                continue  # drain: a failed backend gets nothing more
            try:
                getattr(tracker, method)(*args)
                if method == "start" and tracker.degraded:
                    self.failures[tracker.name] = tracker.degraded
                    self._warn(f"{tracker.name}: {tracker.degraded}")
            except Exception as exc:
                reason = failure_reason(exc)
                self._broken.add(tracker.name)
                self.failures[tracker.name] = reason
                if _disk_full(exc):
                    if tracker.name in _DISK_FULL_SAID:
                        continue
                    _DISK_FULL_SAID.add(tracker.name)
                self._warn(f"{tracker.name} stopped recording run {self.run_id} ({method} failed: {reason}); "
                           "training goes on and the other backends keep recording")
            finally:
                if method == "start":
                    self._started.release()


def failure_reason(exc: BaseException) -> str:
    """A backend's error as one short line: type and message, without SQLAlchemy's statement and links."""
    text = _SQL_DETAIL.sub("", " ".join(f"{type(exc).__name__}: {exc}".split()))
    return redact(text)[:300]


def _disk_full(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) == errno.ENOSPC or says_disk_full(str(exc))

