"""A trained model as MLflow users expect it: a pyfunc model with a signature, and the Model Registry.

    best.pt --save_pyfunc--> model/ (MLmodel, the checkpoint, a signature, an input example)
        -> logged under the run as ``model`` (``runs:/<id>/model`` loads it, `mlflow models serve` serves it)
        -> ``register``: a version in the Model Registry, tagged with the run's test metrics and data
           fingerprint, and an alias moved to it (``models:/NAME@ALIAS``)

The pyfunc model is a thin wrapper around trainlab's self-contained checkpoint: raw images in (the
recorded shape, pixel values 0-255, uint8 or float), class probabilities out, one column per class
name; the network normalises its input itself.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.errors import ArtifactNotFound, ConfigError

if TYPE_CHECKING:
    from trainlab.runs import Record, RunRow

MODEL_PATH = "model"
EXAMPLES = 2  # images in the input example


def _python_model_class() -> type:
    import mlflow.pyfunc

    class TrainlabModel(mlflow.pyfunc.PythonModel):
        """Probabilities per class name for a batch of images (N, C, H, W) or (N, H, W)."""

        # the declared signature is the schema: MLflow's type-hint validation (and its advice, printed on every
        # run's console when predict() has no hints) does not apply
        _skip_type_hint_validation = True

        def load_context(self, context: Any) -> None:
            from trainlab.checkpoint import load_checkpoint, model_from_checkpoint

            payload = load_checkpoint(Path(context.artifacts["checkpoint"]), complete=True)
            self.model = model_from_checkpoint(payload)
            self.class_names = list(payload["class_names"])

        def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201  (MLflow reads hints as a schema)
            import pandas as pd

            from trainlab.metrics import predict_logits, probabilities

            pixels = as_images(model_input, self.model.input_shape)
            probs = probabilities(predict_logits(self.model, pixels)).numpy()
            return pd.DataFrame(probs, columns=self.class_names)

    return TrainlabModel


def as_images(model_input: Any, input_shape: tuple[int, ...]) -> np.ndarray:
    """uint8 (N, C, H, W) from what a caller sends: an array, a list, or a DataFrame of flattened pixels."""
    array = np.asarray(model_input.to_numpy() if hasattr(model_input, "to_numpy") else model_input)
    if array.ndim == 2 and array.shape[1] == int(np.prod(input_shape)):
        array = array.reshape(-1, *input_shape)
    if array.ndim == len(input_shape) and input_shape[0] == 1:
        array = array[:, None]
    if tuple(array.shape[1:]) != tuple(input_shape):
        raise ValueError(f"images of shape {tuple(input_shape)} (channels, height, width) expected, got "
                         f"{tuple(array.shape[1:])}")
    return np.clip(array, 0, 255).astype(np.uint8)


def save_pyfunc(checkpoint: Path, class_names: list[str], input_shape: tuple[int, ...], example: np.ndarray,
                folder: Path) -> Path:
    """The model directory MLflow loads (written to ``folder/model``)."""
    import mlflow.pyfunc
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    from trainlab import __version__

    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, *input_shape))]),
                               outputs=Schema([ColSpec("double", name) for name in class_names]))
    target = folder / MODEL_PATH
    mlflow.pyfunc.save_model(
        str(target), python_model=_python_model_class()(), artifacts={"checkpoint": str(checkpoint)},
        signature=signature, input_example=example.astype(np.uint8),
        pip_requirements=[f"trainlab=={__version__}"])  # the installed environment serves it
    return target


def log_pyfunc(client: Any, run_id: str, checkpoint: Path, class_names: list[str], input_shape: tuple[int, ...],
               example: np.ndarray) -> None:
    """Log the pyfunc model under the run (``runs:/<run_id>/model``)."""
    with tempfile.TemporaryDirectory(prefix="trainlab-model-") as tmp:
        target = save_pyfunc(checkpoint, class_names, input_shape, example, Path(tmp))
        client.log_artifacts(run_id, str(target), MODEL_PATH)


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
    import json

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
