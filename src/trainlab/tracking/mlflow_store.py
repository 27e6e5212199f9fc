"""The MLflow store a run is recorded in: where it is (a local SQLite store, created once under a lock, or a server,
probed before use), a client configured for it, failures told in one line, and finding or marking runs in it.
mlflow_backend.py records a run there."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainlab.errors import TrackingError, TrackingUnavailable
from trainlab.redaction import redact
from trainlab.tracking.base import says_disk_full

LOCAL_STORE = Path("mlruns")


RUN_ID_TAG = "trainlab_run_id"


STORE_LOCK_TIMEOUT_S = 120.0  # creating and migrating a new store takes seconds; a stuck lock holder is dead


# MLflow 3 opens a new experiment in its GenAI view (traces); this tag opens it on the runs table with metrics
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


# MLflow's defaults retry a dead server for ~4 minutes; a user waiting at a prompt should know within seconds.
# (retries, backoff factor, backoff jitter, timeout in seconds per request); the environment wins when set
HTTP_READS = ("1", "1", "0.5", "5")  # `trainlab runs`, `test`: refused in ~1 s, silent in ~11 s


HTTP_WRITES = ("2", "1", "0.5", "10")  # a training run: rides out a short blip of a busy server


def resolve_tracking_uri(setting: str | None = None) -> str:
    """Argument > MLFLOW_TRACKING_URI > the embedded SQLite store in ./mlruns."""
    uri = setting or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(LOCAL_STORE / 'mlflow.db').resolve()}"


def is_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:///") or uri.startswith("file:") or "://" not in uri


def quiet_mlflow_logs() -> None:
    # alembic's migration chatter and MLflow's INFO lines would drown trainlab's own output
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # these log a traceback for an error they then raise (a full disk: trainlab says it once, as one line), or
    # one per sample of the system-metrics thread, whose run is already said to have stopped recording
    for name in ("mlflow.store.db.utils", "mlflow.system_metrics"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def configure_mlflow(http: tuple[str, str, str, str] = HTTP_READS) -> None:
    """Before MLflow is used: bounded HTTP retries and waits, and no usage telemetry, unless the user set them.

    trainlab works offline: MLflow 3's telemetry would phone home from every process (and wait
    for a closed network at exit). ``MLFLOW_DISABLE_TELEMETRY=false`` allows it.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # reading a run's artifacts back (compare, reports) would draw a tqdm bar per file on stderr
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    names = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
             "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    for name, value in zip(names, http):
        os.environ.setdefault(name, value)


def local_store_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def ensure_local_store(uri: str) -> None:
    """Create and migrate a local SQLite store exactly once, whatever number of processes start at once.

    The schema is built in a temp file under a file lock, then renamed into place: a
    process never sees (or records into) a half-created store, and a creator killed
    halfway leaves only a temp file the next one removes.
    """
    db = local_store_path(uri)
    if db is None or db.is_file():
        return
    from filelock import FileLock, Timeout

    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(f"{db}.lock", timeout=STORE_LOCK_TIMEOUT_S):
            if db.is_file():
                return  # another process made it while this one waited
            for stale in db.parent.glob(f".{db.name}.*.init*"):
                stale.unlink(missing_ok=True)
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            quiet_mlflow_logs()
            tmp = db.with_name(f".{db.name}.{os.getpid()}.init")
            store = SqlAlchemyStore(f"sqlite:///{tmp}", (db.parent / "artifacts").resolve().as_uri())
            store.engine.dispose()
            os.replace(tmp, db)
    except Timeout:
        raise TrackingError(f"waited {STORE_LOCK_TIMEOUT_S:.0f} s for another process to create the MLflow store "
                            f"{db}; if none is running, delete {db}.lock and try again") from None


def explain(exc: BaseException) -> str:
    """What went wrong talking to a store or server, in a few words a user can act on."""
    text = " ".join(str(exc).split())
    lowered = text.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if "read timed out" in lowered or "timed out" in lowered or "timeout" in lowered:
        timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "?")
        return f"no answer within {timeout} s (MLFLOW_HTTP_REQUEST_TIMEOUT)"
    if "name or service not known" in lowered or "name resolution" in lowered or "nodename nor servname" in lowered:
        return "unknown host"
    if "file is not a database" in lowered or "malformed" in lowered:
        return "the file is damaged (not an SQLite database)"
    if says_disk_full(lowered):
        return "no space left on device"
    if "readonly database" in lowered or "read-only" in lowered:
        return "the store is read-only"
    if "401" in text or "403" in text or "unauthorized" in lowered or "permission_denied" in lowered:
        return "not authorised; check MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"
    return redact(text)[:300]


PROBE_TIMEOUT_S = 5.0


def probe_server(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """For a tracking server: does it answer at all? One request, no retries, before MLflow is imported.

    A refused port fails in milliseconds and a silent server in ``timeout`` seconds, where MLflow's
    client would retry; any HTTP answer (even 401 or 404) means the server is alive.
    """
    import socket
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    netloc = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    health = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        with urllib.request.urlopen(health, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason):
            raise TrackingUnavailable(f"cannot reach the MLflow tracking server at {redact(uri)}: no answer within "
                                      f"{timeout:g} s; check that it is running and reachable, or point "
                                      "--tracking-uri / MLFLOW_TRACKING_URI elsewhere") from None
        raise store_error(uri, reason if isinstance(reason, BaseException) else exc) from None


def store_error(uri: str, exc: BaseException) -> TrackingError:
    """One line naming the store and what to do, for an error met while reading or opening it."""
    why = explain(exc)
    db = local_store_path(uri)
    if db is not None:
        if why.startswith("the file is damaged"):
            return TrackingError(f"the MLflow store {db} is damaged ({why}); move it aside (`mv {db} {db}.broken`) "
                                 "and train again, or restore it from a backup")
        return TrackingError(f"cannot use the MLflow store {db}: {why}")
    return TrackingUnavailable(f"cannot reach the MLflow tracking server at {redact(uri)}: {why}; check that it "
                               "is running and reachable, or point --tracking-uri / MLFLOW_TRACKING_URI elsewhere")


def client_for(uri: str, http: tuple[str, str, str, str] = HTTP_READS):  # noqa: ANN201  (mlflow types stay lazy)
    configure_mlflow(http)
    from mlflow import MlflowClient

    quiet_mlflow_logs()
    ensure_local_store(uri)
    return MlflowClient(tracking_uri=uri)


def experiment_id(client: Any, name: str, uri: str) -> str:
    """Get or create the experiment; two trainers creating it at once both end up with its id."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        if not set(EXPERIMENT_KIND.items()) <= set(found.tags.items()):  # made before trainlab set the kind
            for key, value in EXPERIMENT_KIND.items():
                client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    location = None
    if is_local_store(uri):
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
        location = (LOCAL_STORE / "artifacts" / safe).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def find_run(client: Any, run_id: str, experiment_ids: Sequence[str] | None = None) -> Any | None:
    """A run by trainlab run id (tag) or by MLflow run id."""
    from mlflow.exceptions import MlflowException

    ids = list(experiment_ids) if experiment_ids else [e.experiment_id for e in client.search_experiments()]
    if ids:
        runs = client.search_runs(ids, filter_string=f"tags.{RUN_ID_TAG} = '{run_id}'", max_results=1)
        if runs:
            return runs[0]
    if re.fullmatch(r"[0-9a-f]{32}", run_id):
        try:
            return client.get_run(run_id)
        except MlflowException:
            return None
    return None


def mark_killed(uri: str | None, run_ids: Sequence[str], why: str,
                statuses: tuple[str, ...] = ("RUNNING", "FINISHED")) -> list[str]:
    """Runs MLflow says are running or finished (``statuses``), of an attempt the sweep threw away (killed, or its
    record cut), or whose process was killed: marked killed with why, so MLflow tells the truth the run folder
    tells. Returns the ones changed."""
    resolved = resolve_tracking_uri(uri)
    store = local_store_path(resolved)
    if store is not None and not store.exists():
        return []
    client = client_for(resolved)
    changed = []
    for run_id in run_ids:
        run = find_run(client, run_id)
        if run is not None and run.info.status in statuses:
            client.set_tag(run.info.run_id, "killed_because", why)
            client.set_terminated(run.info.run_id, status="KILLED")
            changed.append(run_id)
    return changed
