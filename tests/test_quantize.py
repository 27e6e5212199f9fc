from __future__ import annotations

import numpy as np
import torch

from trainlab.checkpoint import load_checkpoint, model_from_checkpoint
from trainlab.evaluate import evaluate, evaluate_int8
from trainlab.experiment import run_experiment
from trainlab.metrics import predict_logits
from trainlab.quantize import quantize_int8


def test_int8_copy_runs_int8_kernels_and_keeps_the_labels(fast_config) -> None:
    out = run_experiment(fast_config("model.arch=fast", "train.epochs=3"))
    model = model_from_checkpoint(load_checkpoint(out.run_dir / "checkpoints" / "best.pt"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = out.dataset
    calibration = data.train_x[:1024]

    quantized = quantize_int8(model, calibration).model
    kinds = {type(m) for m in quantized.modules()}
    assert torch.ao.nn.quantized.Conv2d in kinds and torch.ao.nn.quantized.Linear in kinds
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the fp32 model is untouched
    again = quantize_int8(model, calibration).model
    assert torch.equal(predict_logits(quantized, data.test_x), predict_logits(again, data.test_x))  # reproducible

    fp32 = evaluate(model, data.test_x, data.test_y, data.class_names)
    int8 = evaluate_int8(model, data.test_x, data.test_y, data.class_names, calibration)
    assert fp32.precision == "fp32" and int8.precision == "int8"
    assert not np.allclose(int8.probs, fp32.probs, atol=1e-6)  # really another model ...
    agreement = float((int8.y_pred == fp32.y_pred).mean())
    assert int8.metrics["label_agreement_fp32"] == agreement > 0.95  # ... that labels nearly every image alike
    assert int8.metrics["fp32_accuracy"] == fp32.metrics["accuracy"] > 0.8
    assert abs(int8.metrics["accuracy"] - fp32.metrics["accuracy"]) < 0.03
    assert int8.metrics["quantize_seconds"] > 0 and int8.metrics["images_per_second"] > 0


def test_int8_of_a_model_with_flip_test_time_augmentation_keeps_the_flip(fast_config) -> None:
    """fashion_accurate, cifar10_fast and photos evaluate with model.tta: flip; FX could not trace its len()."""
    out = run_experiment(fast_config("model.arch=fast", "train.epochs=2", "model.tta=flip", "data.augment.flip=true"))
    model = model_from_checkpoint(load_checkpoint(out.run_dir / "checkpoints" / "best.pt")).eval()
    data = out.dataset
    int8 = quantize_int8(model, data.train_x[:256]).model
    logits = predict_logits(int8, data.test_x)
    mirrored = predict_logits(int8, np.ascontiguousarray(data.test_x[..., ::-1]))
    assert torch.allclose(logits, mirrored, atol=1e-4)  # the mean over an image and its mirror: the same either way
    fp32 = predict_logits(model, data.test_x)
    assert float((logits.argmax(1) == fp32.argmax(1)).float().mean()) > 0.9
