"""The Model Registry: a run's logged model as a version of a registered model, tagged with the run's test
metrics and data fingerprint, an alias moved to it (``models:/NAME@ALIAS``); listing the registry; the model
`trainlab serve` serves. The pyfunc model each run logs is tracking/mlflow_pyfunc.py's.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.errors import ArtifactNotFound, ConfigError

# as_images: the pyfunc models of runs recorded before it moved to tracking/ name it here (their pickled predict
# refers to trainlab.mlflow_model.as_images), so it stays importable from this module
from trainlab.tracking.mlflow_pyfunc import MODEL_PATH, as_images  # noqa: F401

if TYPE_CHECKING:
    from trainlab.runs import Record, RunRow


# -- the registry ------------------------------------------------------------------------------------------

VERSION_TAGS = ("test_accuracy", "test_macro_f1", "test_auroc", "test_log_loss")


def register(record: Record, ref: str, name: str, alias: str | None = None) -> tuple[RunRow, str]:
    """A new version of registered model ``name`` from the run's logged model; returns the run and the version."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_alias_name, _validate_model_alias_name_reserved

    if alias is not None:  # before anything is created: a refused alias must not leave a version without it
        try:
            _validate_model_alias_name(alias)
            _validate_model_alias_name_reserved(alias)
        except MlflowException as exc:
            raise ConfigError(f"--alias {alias!r} is not accepted by the registry: {exc.message}; use letters, "
                              "digits, '_' and '-', e.g. --alias champion") from None
    row = record.run(ref)
    client = record.client
    if MODEL_PATH not in {a.path for a in client.list_artifacts(row.mlflow_id)}:
        raise ArtifactNotFound(f"run {row.run_id} has no logged MLflow model (runs before trainlab logged one, or a "
                               "run that did not finish); train it again to register it")
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise ConfigError(f"model name {name!r} is not accepted by the registry: {exc.message}") from None
    tags = {k: f"{row.metrics[k]:.6g}" for k in VERSION_TAGS if k in row.metrics}
    tags.update({"data_fingerprint": row.tags.get("data_fingerprint", ""), "trainlab_run_id": row.run_id,
                 "dataset": row.tags.get("dataset", "")})
    version = client.create_model_version(name, f"runs:/{row.mlflow_id}/{MODEL_PATH}", run_id=row.mlflow_id,
                                          tags=tags)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return row, str(version.version)


def registered_models(record: Record) -> list[dict[str, Any]]:
    """Every registered model with its versions, aliases and their key metrics."""
    client = record.client
    found = []
    for model in client.search_registered_models():
        aliases: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        versions = sorted(client.search_model_versions(f"name = '{model.name}'"), key=lambda v: -int(v.version))
        found.append({"name": model.name, "versions": [
            {"version": str(v.version), "aliases": aliases.get(str(v.version), []), "run": v.tags.get("trainlab_run_id", v.run_id),
             **{k: v.tags.get(k) for k in VERSION_TAGS if k in v.tags}} for v in versions]})
    return found


def served_model(record: Record, ref: str) -> tuple[str, RunRow, str | None]:
    """What `mlflow models serve` takes for a run reference (``models:/...`` as given, else the run's logged
    model), the run it came from, and the request body of the model's input example (None if it has none)."""

    from mlflow.exceptions import MlflowException

    row = record.run(ref)
    client = record.client
    if MODEL_PATH not in {a.path for a in client.list_artifacts(row.mlflow_id)}:
        raise ArtifactNotFound(f"run {row.run_id} has no logged MLflow model (runs before trainlab logged one, or a "
                               "run that did not finish); train it again to serve it")
    uri = ref if ref.startswith("models:/") else f"runs:/{row.mlflow_id}/{MODEL_PATH}"
    with tempfile.TemporaryDirectory(prefix="trainlab-serve-") as tmp:
        try:
            path = client.download_artifacts(row.mlflow_id, f"{MODEL_PATH}/serving_input_example.json", tmp)
            example = json.dumps(json.loads(Path(path).read_text()), separators=(",", ":"))
        except (MlflowException, OSError, ValueError):
            example = None
    return uri, row, example
