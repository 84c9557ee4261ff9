"""Preprocessing as part of the network: built-in Keras layers, fitted on the training split only.

`normalize` scales pixels into [0, 1] (Rescaling by 1/255); `standardize` maps every input feature to
mean 0, variance 1 (Normalization, with statistics computed once per process from the training split).
Either way the model takes the raw uint8 input a user has, so the model a trial logs is the model a
user serves. Built-in layers only (no Lambda, no custom class): the saved file loads with safe_mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature mean and variance of the flattened training inputs (validation and test never leak in)."""

    mean: np.ndarray
    variance: np.ndarray


def fit_stats(x_train: np.ndarray, chunk: int = 8192) -> FeatureStats:
    """Mean, then variance, in float64 over blocks of rows: exact enough, and no float64 copy of the whole
    training set next to the uint8 one. A constant feature gets variance 1, so it maps to 0, not to inf."""
    flat = x_train.reshape(len(x_train), -1)
    blocks = [flat[start:start + chunk] for start in range(0, len(flat), chunk)]
    mean = sum(block.sum(axis=0, dtype=np.float64) for block in blocks) / len(flat)
    variance = sum(np.square(block - mean).sum(axis=0) for block in blocks) / len(flat)
    variance[variance == 0] = 1.0
    return FeatureStats(mean.astype(np.float32), variance.astype(np.float32))


def preprocessing_layers(method: str, stats: FeatureStats) -> list:
    """Layers that turn flattened raw inputs into the network's float features."""
    import keras

    if method == "normalize":
        return [keras.layers.Rescaling(1.0 / 255.0, name="normalize")]
    if method == "standardize":
        return [keras.layers.Normalization(mean=stats.mean, variance=stats.variance, name="standardize")]
    raise ValueError(f"unknown preprocessing method {method!r}; allowed: normalize, standardize")
