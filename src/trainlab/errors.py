"""Errors trainlab raises for problems a user can fix.

Every message says what was wrong, the value seen, and what to do about it.
The CLI prints them on one line and exits with code 2; anything else that
escapes is a bug.

    TrainlabError
    ├── ConfigError         a config field, override or command argument is invalid
    ├── DataError           a dataset cannot be found, read or trusted
    │   ├── DataNotFoundError   no copy of the dataset anywhere it was looked for
    │   ├── CorruptDataError    a file exists but is truncated, damaged or the wrong version
    │   └── DownloadError       fetching a file failed (network, server, checksum)
    ├── CheckpointError     a checkpoint or run folder is missing or unreadable
    ├── TrainingError       training cannot go on (the loss diverged)
    ├── StorageError        a folder cannot be written (permissions, a full disk)
    ├── StudyError          a sweep's study cannot be opened or read (a damaged journal, a database down)
    └── TrackingError       a tracking backend cannot record the run, or a store cannot be read
"""

from __future__ import annotations


class TrainlabError(Exception):
    """Base class: a problem the user can fix; the message says how."""

    exit_code = 2


class ConfigError(TrainlabError):
    """A config field, override or command argument is invalid."""


class SettingsSyntaxError(ConfigError):
    """A settings file or text is not valid YAML or JSON."""


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


class TrackingError(TrainlabError):
    """A tracking backend cannot record the run."""
