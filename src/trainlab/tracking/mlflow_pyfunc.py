"""A trained model as MLflow users expect it: a pyfunc model with a signature, logged with every run.

    best.pt --save_pyfunc--> model/ (MLmodel, the checkpoint, a signature, an input example)
        -> logged under the run as ``model`` (``runs:/<id>/model`` loads it, `mlflow models serve` serves it)
        -> registered by mlflow_model.py (the Model Registry)

The pyfunc model is a thin wrapper around trainlab's self-contained checkpoint: raw images in (the
recorded shape, pixel values 0-255, uint8 or float), class probabilities out, one column per class
name; the network normalises its input itself.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from trainlab import __version__

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
