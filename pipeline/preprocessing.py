"""Preprocessing as part of the network: built-in Keras layers, fitted on the training split only.

| input | `normalize` | `standardize` |
| --- | --- | --- |
| uint8 images | /255 (Rescaling) | per-feature mean 0, variance 1 (Normalization) |
| other numbers, a table's numeric columns | per-feature min-max into [0, 1] (Normalization) | the same z-score |
| a table's categorical columns | one-hot (StringLookup; a category training never saw gets its own slot) | the same |
| a table's gaps (`data.missing: impute`) | first filled: the mean, the most frequent category (Keras ops) | the same |

The statistics are computed once per process from the training split. Either way the model takes the raw
input a user has, so the model a trial logs is the model a user serves. Built-in layers only (no Lambda,
no custom class): the saved file loads with safe_mode.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

STATS_BLOCK_BYTES = 64 * 2**20  # the float64 block the statistics work on: a bounded working set
STATS_BYTES_PER_FEATURE = 48  # float64 mean, variance and one block's sums; minimum, maximum; the float32 results


MISSING_TEXT = ""  # a table's missing category, as its structured array holds it (a missing number is NaN)


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature mean, variance, minimum and maximum of the flattened training inputs (a table's numeric
    columns), a table's categories per text column, and, for a table whose study imputes (data.missing:
    impute), each column's fill: the mean or the most frequent category (validation and test never leak in)."""

    mean: np.ndarray
    variance: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fills: Mapping[str, float | str] = field(default_factory=dict)
    target_mean: float = 0.0  # a regression's training labels: the model's output layer maps standardized
    target_std: float = 1.0  # predictions back to the label's units with them (pipeline.tasks.regression)


def fit_stats(x_train: np.ndarray, impute: bool = False, y_train: np.ndarray | None = None) -> FeatureStats:
    """The statistics the preprocessing layers need, from the training split. `impute` (a table whose
    study imputes) gives the model its fills even when the training split has no gaps: the rows it is
    validated, tested and served on may have them. `y_train`, a regression's numeric labels, gives the
    target's mean and standard deviation (split.py refuses a constant label, which has none)."""
    stats = _input_stats(x_train, impute)
    if y_train is None:
        return stats
    return dataclasses.replace(stats, target_mean=float(np.mean(y_train, dtype=np.float64)),
                               target_std=float(np.std(y_train, dtype=np.float64)))


def _input_stats(x_train: np.ndarray, impute: bool) -> FeatureStats:
    if x_train.dtype.names is None:
        return _numeric_stats(x_train)
    fills = gap_fills(x_train) if impute or has_gaps(x_train) else {}
    x_train = fill_gaps(x_train, fills)  # the statistics of the rows the model's layers see once filled
    names = x_train.dtype.names
    numbers = [n for n in names if x_train.dtype[n].kind != "U"]
    table = np.stack([x_train[n] for n in numbers], axis=1) if numbers else np.zeros((len(x_train), 0), np.float32)
    categories = {n: tuple(sorted(set(x_train[n].tolist()))) for n in names if x_train.dtype[n].kind == "U"}
    return dataclasses.replace(_numeric_stats(table), categories=categories, fills=fills)


def stats_bytes(features: int) -> int:
    """The most memory fit_stats takes besides its input: one float64 block and the per-feature results.
    The memory estimate counts it (pipeline/data/memory.py)."""
    return STATS_BLOCK_BYTES + STATS_BYTES_PER_FEATURE * features


def _numeric_stats(x_train: np.ndarray) -> FeatureStats:
    """Mean, then variance, in float64 over blocks of at most STATS_BLOCK_BYTES: exact enough, and a working
    set that stays the same however many or however large the inputs (blocks of rows, and of columns where
    one row alone is larger). A constant feature gets variance 1, so it maps to 0, not to inf."""
    flat = x_train.reshape(len(x_train), -1)
    count, features = flat.shape
    width = max(1, min(features, STATS_BLOCK_BYTES // 8))  # a table without numeric columns has 0 features
    height = max(1, STATS_BLOCK_BYTES // 8 // width)
    mean, variance = np.zeros(features), np.zeros(features)
    for first in range(0, features, width):
        part = slice(first, first + width)
        for start in range(0, count, height):
            mean[part] += flat[start:start + height, part].sum(axis=0, dtype=np.float64)
        mean[part] /= count
        for start in range(0, count, height):
            variance[part] += _squared_deviations(flat[start:start + height, part], mean[part])
    variance /= count
    variance[variance == 0] = 1.0
    minimum, maximum = flat.min(axis=0).astype(np.float32), flat.max(axis=0).astype(np.float32)
    return FeatureStats(mean.astype(np.float32), variance.astype(np.float32), minimum, maximum)


def _squared_deviations(block: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per feature, the block's sum of squared deviations from `mean`, through one float64 copy of the block,
    freed on return (a loop variable would keep the last block alive beside the next)."""
    deviations = np.subtract(block, mean, dtype=np.float64)
    np.square(deviations, out=deviations)
    return deviations.sum(axis=0)


def has_gaps(x: np.ndarray) -> bool:
    """Whether a table's rows miss a value anywhere."""
    return any(bool(_gaps(x[name]).any()) for name in x.dtype.names)


def gap_fills(x_train: np.ndarray) -> dict[str, float | str]:
    """Each column's fill, from the training split alone: numbers its mean, categories its most frequent one."""
    fills: dict[str, float | str] = {}
    for name in x_train.dtype.names:
        present = x_train[name][~_gaps(x_train[name])]
        if x_train.dtype[name].kind == "U":
            values, counts = np.unique(present, return_counts=True)
            fills[name] = str(values[counts.argmax()]) if len(values) else MISSING_TEXT
        else:
            fills[name] = float(np.float32(present.mean(dtype=np.float64))) if len(present) else 0.0
    return fills


def fill_gaps(x: np.ndarray, fills: Mapping[str, float | str]) -> np.ndarray:
    """A table's rows with each gap replaced by its column's fill (a copy; the rows as they are without fills)."""
    if not fills:
        return x
    x = x.copy()
    for name, value in fills.items():
        x[name][_gaps(x[name])] = value
    return x


def filled_gaps(column, fill: float | str, layer_name: str):
    """A named input's gaps (NaN, or empty text) replaced by the training split's fill inside the model, so that
    rows served with gaps are filled as the study filled them: Keras operations, which the saved model keeps
    and safe_mode loads (no Lambda). The Identity layer names the step, so a reader of the model can tell."""
    import keras

    if isinstance(fill, str):
        filled = keras.ops.where(keras.ops.equal(column, MISSING_TEXT), fill, column)
    else:
        filled = keras.ops.where(keras.ops.isnan(column), np.float32(fill), column)
    return keras.layers.Identity(name=layer_name)(filled)


def _gaps(column: np.ndarray) -> np.ndarray:
    return column == MISSING_TEXT if column.dtype.kind == "U" else np.isnan(column)


def category_layer(categories: tuple[str, ...], layer_name: str):
    """One-hot over the training split's categories, plus one slot for any category it never saw."""
    import keras

    return keras.layers.StringLookup(vocabulary=list(categories) or [""], num_oov_indices=1,
                                     output_mode="one_hot", name=layer_name)


def preprocessing_layers(method: str, stats: FeatureStats, input_dtype: str = "uint8") -> list:
    """Layers that turn flattened raw inputs into the network's float features."""
    import keras

    if method == "normalize" and input_dtype == "uint8":
        return [keras.layers.Rescaling(1.0 / 255.0, name="normalize")]
    if method == "normalize":
        # (x - min) / sqrt(range^2): min-max scaling in the one built-in layer; a constant feature maps to 0.
        spread = np.where(stats.maximum > stats.minimum, stats.maximum - stats.minimum, 1.0)
        return [keras.layers.Normalization(mean=stats.minimum, variance=np.square(spread), name="normalize")]
    if method == "standardize":
        return [keras.layers.Normalization(mean=stats.mean, variance=stats.variance, name="standardize")]
    raise ValueError(f"unknown preprocessing method {method!r}; allowed: normalize, standardize")
