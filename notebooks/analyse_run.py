# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Analyse a run's predictions
#
# Where does a trained model go wrong, and how sure is it when it does? Everything here is read back
# from the record through MLflow's client (the predictions, per-epoch metrics and documents every run
# logs), not from the run folder, so a teammate's run on the team's tracking server works the same
# (set `MLFLOW_TRACKING_URI`). The figures are trainlab's own, the same as on the run's report page.
#
# `RUN` is a run id, an MLflow run id or `models:/NAME@ALIAS`; empty means the latest finished run.

# %% tags=["parameters"]
RUN = ""

# %%
# the inline backend from the start: the figures trainlab's functions return display as images
# %matplotlib inline
import warnings

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from tqdm import TqdmWarning

# MLflow imports tqdm.auto, which in a kernel without ipywidgets warns and then uses its text bar (the one
# wanted here): imported first, without the warning
with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)
    import tqdm.auto  # noqa: F401

from trainlab.notebook import enter_project, latest_training_run
from trainlab.pages.run_page import best_epoch, calibration, view_from_record
from trainlab.plots import confusion_pair_figure, learning_curves_figure, reliability_figure
from trainlab.runs import Record

root = enter_project()
record = Record()
row = record.run(RUN or latest_training_run(record))
view = view_from_record(record, row)
ev = view.test
names = list(ev.class_names)
print(f"run {row.run_id} (MLflow {row.mlflow_id}) in {record.uri}")
print(f"experiment {row.experiment} · dataset {row.tags.get('dataset')} · model {row.params.get('model.arch')} · "
      f"seed {row.params.get('seed')} · {len(view.history)} epochs")

# %% [markdown]
# ## The config and the key metrics
# The settings that differ from trainlab's defaults are what this run is about; the test metrics are
# the ones the run recorded (macro averages weigh every class equally, whatever its size).

# %%
from trainlab.config import Config, flatten_config

defaults = flatten_config(Config())
changed = {k: v for k, v in row.params.items() if k in defaults and defaults[k] != v}
for key, value in sorted(changed.items()):
    print(f"  {key} = {value}")
for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "auroc", "log_loss"):
    print(f"test {key.replace('_', ' '):16} {ev.metrics[key]:.4f}")

# %% [markdown]
# ## Learning curves
# Training loss far below validation loss means over-fitting; the dashed line is the epoch whose
# checkpoint was kept (the best by the monitored validation metric).

# %%
monitor = row.params.get("train.monitor", "val_accuracy")
display(learning_curves_figure(view.history, best_epoch(view.history, monitor), monitor))

# %% [markdown]
# ## Confusion matrix, and the metrics per class
# Rows are the true class, columns the prediction; the right panel shows each row as shares, so small
# classes are as visible as big ones. The table lists precision (of what was called this class, how much
# was), recall (of this class, how much was found) and F1 per class.

# %%
display(confusion_pair_figure(ev.confusion, names))
print(f"{'class':>14} {'precision':>9} {'recall':>7} {'F1':>7} {'support':>8}")
for r in sorted(ev.per_class, key=lambda r: r["f1"]):
    print(f"{r['class']:>14} {r['precision']:9.3f} {r['recall']:7.3f} {r['f1']:7.3f} {r['support']:8d}")

# %% [markdown]
# ## The most confused pairs, with the images
# For the three most frequent mistakes (true class → predicted class), the misclassified test images
# with the probability the model gave to its wrong answer and to the right one. Often a share of them
# are ambiguous or mislabelled: the model is not always the one at fault.

# %%
def show(image: np.ndarray, ax: plt.Axes) -> None:
    ax.imshow(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0), cmap="gray")
    ax.set_axis_off()


off = ev.confusion.astype(float)
np.fill_diagonal(off, 0)
pairs = [(int(i), int(j)) for i, j in zip(*np.unravel_index(np.argsort(-off, axis=None), off.shape)) if off[i, j]][:3]
if view.images is None or not pairs:
    print("no mistakes to show" if not pairs else "the test images are not available here: " + " ".join(view.notes))
else:
    pred = ev.y_pred
    fig, axes = plt.subplots(len(pairs), 6, figsize=(8, 1.6 * len(pairs)), squeeze=False)
    for row_axes, (i, j) in zip(axes, pairs):
        where = np.flatnonzero((ev.y_true == i) & (pred == j))
        where = where[np.argsort(-ev.probs[where, j])][:6]
        for ax in row_axes:
            ax.set_axis_off()
        for ax, k in zip(row_axes, where):
            show(view.images[k], ax)
            ax.set_title(f"{names[j]} {ev.probs[k, j]:.2f}\n{names[i]} {ev.probs[k, i]:.2f}", fontsize="x-small")
        row_axes[0].text(-0.1, 0.5, f"{names[i]}→{names[j]}", transform=row_axes[0].transAxes, ha="right",
                         va="center", fontsize="small")
    plt.show()

# %% [markdown]
# ## The most confident mistakes
# Wrong answers given with near certainty: the first place to look for label errors in the test split,
# and the cases a confidence threshold would not catch.

# %%
wrong = np.flatnonzero(ev.y_pred != ev.y_true)
wrong = wrong[np.argsort(-ev.probs[wrong].max(axis=1))][:12]
if view.images is not None and len(wrong):
    fig, axes = plt.subplots(2, 6, figsize=(8, 3.4), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, k in zip(axes.ravel(), wrong):
        show(view.images[k], ax)
        ax.set_title(f"{names[ev.y_true[k]]}→{names[ev.y_pred[k]]}\n{ev.probs[k].max():.2f}", fontsize="x-small")
    plt.show()
print(f"{len(np.flatnonzero(ev.y_pred != ev.y_true))} mistakes of {len(ev.y_true)} test images")

# %% [markdown]
# ## Calibration: does the model's confidence mean what it says?
# Among predictions made with confidence 0.9, about 90% should be right. Points below the diagonal mean
# over-confidence. The expected calibration error is the average gap, weighted by how many images fall
# in each confidence bin.

# %%
prob_true, prob_pred, counts, ece = calibration(ev)
display(reliability_figure(prob_true, prob_pred, counts, ece))
print(f"expected calibration error {ece:.4f}")

# %% [markdown]
# ## The same run in Weights & Biases
# When `WANDB_API_KEY` is set and the run was synced, its W&B summary is read with W&B's public API.

# %%
import os

if os.environ.get("WANDB_API_KEY"):
    import wandb

    project = row.params.get("tracking.wandb_project") or os.environ.get("WANDB_PROJECT") or "trainlab"
    try:
        synced = wandb.Api().run(f"{project}/{row.run_id}")
        print({k: v for k, v in synced.summary.items() if k.startswith("test_")})
    except Exception as exc:  # not synced, or no access: say so and go on
        print(f"not found in W&B ({type(exc).__name__}); sync it with `wandb sync wandb/offline-run-*-{row.run_id}`")
else:
    print("no WANDB_API_KEY: W&B not asked (the MLflow record above is the record of truth)")
