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
# # Explore a dataset before training on it
#
# What is in the data, and what could trip a model up: how many images, of what shape; whether the
# classes are balanced; how bright the pixels are; what each class looks like on average and how much
# its images vary; and whether test images also appear in the training split (a leak that flatters
# every metric). The data is loaded through trainlab's own data layer: the same files, verified
# against the same checksums, as `trainlab train` uses.
#
# Choose the dataset in the next cell: `digits` (bundled, offline), `fashion-mnist`, `mnist`,
# `cifar10`, or `imagefolder` / `npz` with `DATA_PATH`.

# %% tags=["parameters"]
DATASET = "digits"
DATA_PATH = ""  # for imagefolder (a folder) or npz (a file)
SAMPLES_PER_CLASS = 8

# %%
import matplotlib.pyplot as plt
import numpy as np

from trainlab.config import load_config
from trainlab.data import load_data
from trainlab.notebook import enter_project

root = enter_project()
cfg = load_config(None, [f"data.name={DATASET}", *([f"data.path={DATA_PATH}"] if DATA_PATH else [])])
dataset, splits = load_data(cfg.data)
names = list(dataset.class_names)
split_arrays = {"train": (splits.train_x, splits.train_y), "validation": (splits.val_x, splits.val_y),
                "test": (splits.test_x, splits.test_y)}
print(f"project: {root}")
print(f"dataset {dataset.name} from {dataset.location}; {len(names)} classes: {', '.join(names)}")
for split, (x, y) in split_arrays.items():
    print(f"  {split:10} {len(x):7,} images, array {x.shape} {x.dtype}, labels {y.dtype}")

# %% [markdown]
# ## Samples of every class
# A row per class. Check that the labels match what you see, and notice which classes look alike:
# those are the pairs a model will confuse first.

# %%
def show(image: np.ndarray, ax: plt.Axes) -> None:
    ax.imshow(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0), cmap="gray")
    ax.set_axis_off()


train_x, train_y = splits.train_x, splits.train_y
fig, axes = plt.subplots(len(names), SAMPLES_PER_CLASS, figsize=(SAMPLES_PER_CLASS * 0.9, len(names) * 0.95),
                         squeeze=False)
rng = np.random.default_rng(0)
for k, name in enumerate(names):
    picked = rng.choice(np.flatnonzero(train_y == k), min(SAMPLES_PER_CLASS, int(np.sum(train_y == k))), replace=False)
    for ax, i in zip(axes[k], picked):
        show(train_x[i], ax)
    axes[k][0].set_title(name, loc="left", fontsize="small")
plt.show()

# %% [markdown]
# ## How many images each class has, per split
# A model trained on imbalanced classes favours the big ones; accuracy then hides poor recall on the
# small ones (look at macro F1 too). Validation and test should have the same proportions as train.

# %%
counts = {split: np.bincount(y, minlength=len(names)) for split, (_, y) in split_arrays.items()}
fig, ax = plt.subplots(figsize=(9, 3.5))
width = 0.8 / len(counts)
for i, (split, c) in enumerate(counts.items()):
    ax.bar(np.arange(len(names)) + i * width, c / c.sum() * 100, width, label=f"{split} ({c.sum():,})")
ax.set_xticks(np.arange(len(names)) + width, names, rotation=45)
ax.set(ylabel="share of the split (%)", title="Label distribution")
ax.legend()
plt.show()
shares = counts["train"] / counts["train"].sum()
print(f"largest class {names[shares.argmax()]} ({shares.max():.1%}), smallest {names[shares.argmin()]} "
      f"({shares.min():.1%}); ratio {shares.max() / max(shares.min(), 1e-9):.2f}")

# %% [markdown]
# ## Pixel intensities
# Most images have a background value that dominates (a spike at 0 for dark backgrounds). trainlab
# normalises with the training split's mean and standard deviation per channel, printed below.

# %%
channels = train_x.shape[1]
fig, ax = plt.subplots(figsize=(7, 3.2))
for c in range(channels):
    label = ("red", "green", "blue")[c] if channels == 3 else "gray"
    ax.hist(train_x[:, c].ravel(), bins=64, histtype="step", density=True, label=label, color=label if channels == 3 else None)
ax.set(xlabel="pixel value (0-255)", ylabel="density", yscale="log", title="Pixel intensity distribution (train)")
ax.legend()
plt.show()
for c in range(channels):
    values = train_x[:, c].astype(np.float64)
    print(f"channel {c}: mean {values.mean():.1f}, std {values.std():.1f}, {np.mean(values == 0):.1%} exactly 0")

# %% [markdown]
# ## The average image of each class, and where it varies
# Top row: each class's mean image (what the class looks like "on average"); bottom row: the per-pixel
# standard deviation (where images of the class differ). Crisp means and low spread make a class easy.

# %%
def as_image(array: np.ndarray) -> np.ndarray:
    return array[0] if array.shape[0] == 1 else (array.transpose(1, 2, 0) / max(array.max(), 1e-9))


fig, axes = plt.subplots(2, len(names), figsize=(len(names) * 1.1, 2.6), squeeze=False)
spread_by_class = {}
for k, name in enumerate(names):
    members = train_x[train_y == k].astype(np.float32)
    spread_by_class[name] = float(members.std(axis=0).mean())
    axes[0][k].imshow(as_image(members.mean(axis=0)), cmap="gray")
    axes[1][k].imshow(as_image(members.std(axis=0)), cmap="magma")
    axes[0][k].set_title(name, fontsize="small")
    for ax in axes[:, k]:
        ax.set_axis_off()
plt.show()
ordered = sorted(spread_by_class.items(), key=lambda kv: kv[1])
print(f"most uniform class: {ordered[0][0]}; most varied: {ordered[-1][0]} (mean per-pixel std "
      f"{ordered[0][1]:.1f} vs {ordered[-1][1]:.1f})")

# %% [markdown]
# ## Variety within a class: nearest to and farthest from the class mean
# For each class, the three training images closest to its mean image (typical examples) and the three
# farthest (unusual ones: odd styles, mislabels, crops). The far ones are where to look for label noise.

# %%
fig, axes = plt.subplots(len(names), 6, figsize=(6 * 0.9, len(names) * 0.95), squeeze=False)
for k, name in enumerate(names):
    index = np.flatnonzero(train_y == k)
    members = train_x[index].reshape(len(index), -1).astype(np.float32)
    distance = np.linalg.norm(members - members.mean(axis=0), axis=1)
    order = np.argsort(distance)
    for ax, i in zip(axes[k], [*order[:3], *order[-3:]]):
        show(train_x[index[i]], ax)
    axes[k][0].set_title(f"{name}: nearest", loc="left", fontsize="x-small")
    axes[k][3].set_title("farthest", loc="left", fontsize="x-small")
plt.show()

# %% [markdown]
# ## Test images that are (nearly) in the training split
# An exact duplicate is found by hashing the pixels; a near duplicate by the nearest training image
# (Euclidean distance on the images averaged down to 8x8) being much closer than test images usually are
# to their nearest training image. Duplicates make test accuracy look better than it is on new data.

# %%
import hashlib

from sklearn.neighbors import NearestNeighbors

train_hashes = {hashlib.sha1(image.tobytes()).hexdigest() for image in splits.train_x}
exact = sum(hashlib.sha1(image.tobytes()).hexdigest() in train_hashes for image in splits.test_x)


def pooled(x: np.ndarray) -> np.ndarray:
    """Images averaged down to at most 8x8 per channel: the neighbour search stays seconds on 60,000 images."""
    factor = max(1, x.shape[-1] // 8)
    n, c, h, w = x.shape
    x = x[:, :, : h // factor * factor, : w // factor * factor].astype(np.float32)
    return x.reshape(n, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5)).reshape(n, -1)


distance, nearest = NearestNeighbors(n_neighbors=1).fit(pooled(splits.train_x)).kneighbors(pooled(splits.test_x))
distance = distance[:, 0]
threshold = 0.1 * np.median(distance)
near = np.flatnonzero(distance <= threshold)
print(f"{exact} test images are exact copies of training images; {len(near)} are near duplicates "
      f"(distance at most a tenth of the median nearest distance, {threshold:.1f})")
if len(near):
    shown = near[:6]
    fig, axes = plt.subplots(2, len(shown), figsize=(len(shown) * 1.1, 2.4), squeeze=False)
    for j, i in enumerate(shown):
        show(splits.test_x[i], axes[0][j])
        show(splits.train_x[nearest[i, 0]], axes[1][j])
        axes[0][j].set_title(f"test #{i}", fontsize="x-small")
        axes[1][j].set_title("train", fontsize="x-small")
    plt.show()

# %% [markdown]
# ## What to take from this
# The printed findings above are the checklist: imbalance (the ratio of the largest to the smallest
# class), the background share of pixels, the least and most uniform classes (expect the most varied to
# have the lowest recall), and any train/test duplicates (remove them before trusting a test metric).
