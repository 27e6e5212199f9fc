from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from trainlab.config import ModelConfig
from trainlab.evaluate import classification_report, evaluate
from trainlab.models import create_model


def test_metrics_equal_scikit_learn_on_the_same_predictions() -> None:
    from conftest import make_images

    torch.manual_seed(0)
    x, y = make_images(30, classes=4)
    model = create_model(ModelConfig(), (1, 16, 16), 4).eval()
    ev = evaluate(model, x[:, None], y, ["a", "b", "c", "d"], batch_size=17)  # uneven batches on purpose
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(x[:, None])).double(), 1).numpy()
    pred = probs.argmax(1)
    assert np.allclose(ev.probs, probs)
    assert ev.metrics["accuracy"] == skm.accuracy_score(y, pred)
    assert ev.metrics["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert ev.metrics["auroc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"))
    assert ev.metrics["log_loss"] == pytest.approx(skm.log_loss(y, probs))
    assert np.array_equal(ev.confusion, skm.confusion_matrix(y, pred))
    assert [c["support"] for c in ev.per_class] == [30] * 4
    assert ev.metrics["images_per_second"] > 0


def test_report_on_known_predictions() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.1, .8, .1], [.1, .1, .8], [.6, .2, .2]])
    ev = classification_report(y, probs, ["x", "y", "z"])
    assert ev.metrics["accuracy"] == pytest.approx(4 / 6)
    assert ev.per_class[1] == {"class": "y", "precision": pytest.approx(2 / 3), "recall": 1.0,
                               "f1": pytest.approx(0.8), "support": 2}
    assert ev.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert set(ev.roc) == {"x", "y", "z"} and ev.roc["x"]["fpr"][0] == 0.0
    columns, rows = ev.predictions
    assert columns == ["index", "true_label", "predicted_label", "p_x", "p_y", "p_z"]
    assert rows[1][:3] == [1, "x", "y"] and rows[5][:3] == [5, "z", "x"]


def test_auroc_is_nan_not_a_crash_when_a_class_is_absent() -> None:
    y = np.array([0, 0, 1, 1])
    probs = np.full((4, 3), 1 / 3)
    ev = classification_report(y, probs, ["a", "b", "c"])
    assert np.isnan(ev.metrics["auroc"]) and "c" not in ev.roc
