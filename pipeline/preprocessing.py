"""Preprocessing as part of the network: built-in Keras layers, fitted on the training split only.

| input | `normalize` | `standardize` |
| --- | --- | --- |
| uint8 images | /255 (Rescaling) | per-feature mean 0, variance 1 (Normalization) |
| other numbers, a table's numeric columns | per-feature min-max into [0, 1] (Normalization) | the same z-score |
| a table's categorical columns | one-hot (StringLookup; a category training never saw gets its own slot) | the same |

The statistics are computed once per process from the training split. Either way the model takes the raw
input a user has, so the model a trial logs is the model a user serves. Built-in layers only (no Lambda,
no custom class): the saved file loads with safe_mode.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature mean, variance, minimum and maximum of the flattened training inputs (a table's numeric
    columns), and a table's categories per text column (validation and test never leak in)."""

    mean: np.ndarray
    variance: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def fit_stats(x_train: np.ndarray) -> FeatureStats:
    """The statistics the preprocessing layers need, from the training split."""
    if x_train.dtype.names is None:
        return _numeric_stats(x_train)
    names = x_train.dtype.names
    numbers = [n for n in names if x_train.dtype[n].kind != "U"]
    table = np.stack([x_train[n] for n in numbers], axis=1) if numbers else np.zeros((len(x_train), 0), np.float32)
    categories = {n: tuple(sorted(set(x_train[n].tolist()))) for n in names if x_train.dtype[n].kind == "U"}
    return dataclasses.replace(_numeric_stats(table), categories=categories)


def _numeric_stats(x_train: np.ndarray, chunk: int = 8192) -> FeatureStats:
    """Mean, then variance, in float64 over blocks of rows: exact enough, and no float64 copy of the whole
    training set next to the uint8 one. A constant feature gets variance 1, so it maps to 0, not to inf."""
    flat = x_train.reshape(len(x_train), -1)
    blocks = [flat[start:start + chunk] for start in range(0, len(flat), chunk)]
    mean = sum(block.sum(axis=0, dtype=np.float64) for block in blocks) / len(flat)
    variance = sum(np.square(block - mean).sum(axis=0) for block in blocks) / len(flat)
    variance[variance == 0] = 1.0
    minimum, maximum = flat.min(axis=0).astype(np.float64), flat.max(axis=0).astype(np.float64)
    return FeatureStats(*(a.astype(np.float32) for a in (mean, variance, minimum, maximum)))


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
