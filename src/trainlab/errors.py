"""Errors trainlab raises for problems a user can fix, and the exit code each one ends a command with.

Every message says what was wrong, the value seen, and what to do about it. The CLI
(``cli/common.py``, ``user_errors``) prints the message on one line and exits with the
class's ``exit_code``; anything else that escapes is a bug (a traceback, exit 1).
This table is the one place the codes are written; ``tests/test_errors.py`` holds it
to the classes and to what the command line returns.

    class                           exit  meaning
    TrainlabError                      2  a problem the user can fix; the message says how
    ├── ConfigError                    2  a config field, override or command argument is invalid
    │   ├── SettingsSyntaxError        2  a settings file or text is not valid YAML or JSON
    │   ├── RunNotFound                2  no run, sweep, trial or model version answers to the reference given
    │   ├── RunLocked                  2  the run is being recorded by another process right now
    │   └── ArtifactNotFound           2  a recorded run has no such file (an older run, or one that did not finish)
    ├── DataError                      2  a dataset cannot be found, read or trusted
    │   ├── DataNotFoundError          2  no copy of the dataset anywhere it was looked for
    │   ├── CorruptDataError           2  a file exists but is truncated, damaged or the wrong version
    │   └── DownloadError              2  fetching a file failed (network, server, checksum)
    ├── CheckpointError                2  a checkpoint or run folder is missing or unreadable
    ├── TrainingError                  2  training cannot go on (the loss diverged)
    ├── StorageError                   2  a folder cannot be written (permissions, a full disk)
    ├── StudyError                     2  a sweep's study cannot be opened or read (a damaged journal, a database down)
    ├── CannotReproduce                2  a recorded run cannot be rebuilt here (its commit, diff or data)
    ├── TrackingError                  2  a tracking backend cannot record the run, or a store cannot be read
    │   ├── TrackingUnavailable        2  the MLflow tracking server cannot be reached (or refuses us)
    │   └── RecordIncomplete           3  the command's work is done, but a backend (W&B, MLflow) did not record it
    └── RankFailed                     4  a process of a distributed run died (killed, out of memory); all were stopped
    RunInterrupted                   130  Ctrl-C stopped the command (143 for SIGTERM, 4 for a rank lost); a KeyboardInterrupt

Outside the table: an OSError of a full disk or a refused permission, wherever it strikes, is
one line and exit 2 as well (``cli/common.py``); `trainlab reproduce` exits 1 for the verdict
"different", which is an answer, not an error.
"""

from __future__ import annotations


class TrainlabError(Exception):
    """Base class: a problem the user can fix; the message says how."""

    exit_code = 2


class ConfigError(TrainlabError):
    """A config field, override or command argument is invalid."""


class SettingsSyntaxError(ConfigError):
    """A settings file or text is not valid YAML or JSON."""


class RunNotFound(ConfigError):
    """No run, sweep, trial of a sweep or model version answers to the reference given (in the MLflow store or
    the sweep's study). A ConfigError: the reference is a command argument that names nothing."""


class RunLocked(ConfigError):
    """The run is being recorded by another process right now (a second `--resume` of a live run)."""


class ArtifactNotFound(ConfigError):
    """A recorded run has no such file (test predictions, environment.json, a logged model): an older or foreign
    run, or one that did not finish. Readers that can do without the file catch this, and only this."""


class DataError(TrainlabError):
    """A dataset cannot be found, read or trusted."""


class DataNotFoundError(DataError):
    """No copy of the dataset anywhere it was looked for."""


class CorruptDataError(DataError):
    """A dataset file exists but is truncated, damaged or the wrong version."""


class DownloadError(DataError):
    """Fetching a dataset file failed; nothing was left in the cache."""


class CheckpointError(TrainlabError):
    """A checkpoint or run folder is missing or unreadable."""


class TrainingError(TrainlabError):
    """Training cannot go on: the loss diverged, or no epoch gave a usable metric."""


class StorageError(TrainlabError):
    """A run folder, store or cache cannot be written: permissions, a read-only mount, a full disk."""


class StudyError(TrainlabError):
    """A sweep's study cannot be opened or read: its journal damaged mid-sweep, its database unreachable."""


class CannotReproduce(TrainlabError):
    """The run cannot be rebuilt here: a missing commit, a diff that does not apply, data that changed."""


class TrackingError(TrainlabError):
    """A tracking backend cannot record the run."""


class TrackingUnavailable(TrackingError):
    """The MLflow tracking server cannot be reached or used: a refused connection, no answer in time, an unknown
    host, credentials it does not accept."""


class RecordIncomplete(TrackingError):
    """The command did its work (a run trained, a comparison made), but a backend did not record it; the
    message names each backend and why. Exit code 3, so a script can tell it from a failed command."""

    exit_code = 3


class RankFailed(TrainlabError):
    """One process of a distributed run died; torchrun stopped the others, and the run can be resumed."""
    exit_code = 4


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the command; the message says what became of the run.

    A KeyboardInterrupt, so every ``except KeyboardInterrupt`` that cleans up (a sweep's workers stopped, its
    trial queued again) runs for it too, and no ``except Exception`` swallows it. Each layer that knows more
    adds it with ``RunInterrupted.of(exc, ...)``: the run's id (the run's context manager), whether a checkpoint
    can continue it (the experiment), or a whole message (a sweep).
    """

    def __init__(self, message: str | None = None, *, sigterm: bool = False, run_id: str | None = None,
                 resumable: bool = False, lost_rank: str = "", resume_with: str = "") -> None:
        self.message, self.sigterm, self.run_id, self.resumable = message, sigterm, run_id, resumable
        self.lost_rank = lost_rank  # another process of a distributed run "died", or went "silent": the run stopped
        self.resume_with = resume_with  # the command that continues the run, when it is not plain `--resume RUN`
        super().__init__(message or self._default())

    @property
    def exit_code(self) -> int:
        return RankFailed.exit_code if self.lost_rank else 143 if self.sigterm else 130

    def _default(self) -> str:
        if self.run_id and self.resumable:
            return (f"interrupted; run {self.run_id} is marked killed. Continue it with "
                    f"{self.resume_with or f'`trainlab train --resume {self.run_id}`'}")
        if self.run_id:
            return (f"interrupted before the first epoch ended; run {self.run_id} is marked killed and has no "
                    "checkpoint to resume from")
        return "interrupted"

    @classmethod
    def of(cls, exc: KeyboardInterrupt, *, message: str | None = None, run_id: str | None = None,
           resumable: bool | None = None, resume_with: str | None = None) -> RunInterrupted:
        """``exc`` (a plain Ctrl-C, or a RunInterrupted raised below) with what the caller adds; its traceback kept."""
        if isinstance(exc, RunInterrupted):
            before = exc
        else:  # Python's own Ctrl-C, or a KeyboardInterrupt("SIGTERM") raised by other code
            before = cls(sigterm=str(exc) == "SIGTERM")
        found = cls(message if message is not None else before.message, sigterm=before.sigterm,
                    run_id=run_id if run_id is not None else before.run_id,
                    resumable=resumable if resumable is not None else before.resumable, lost_rank=before.lost_rank,
                    resume_with=resume_with if resume_with is not None else before.resume_with)
        return found.with_traceback(exc.__traceback__)
