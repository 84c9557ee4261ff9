"""Pixel preprocessing: `normalize` (/255 into [0, 1]) or `standardize` (per-pixel mean 0, variance 1).

Both are stored as one map, (x - mean) / sqrt(variance), fitted on the training split only and computed
with the same float32 operations as Keras' Normalization layer, so an exported model that bakes the
numbers in sees bit-identical inputs. Each variant is computed once per sweep, not per trial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.preprocessing import StandardScaler

from pipeline.data import Splits

N_FEATURES = 28 * 28
KERAS_EPSILON = 1e-7  # keras.backend.epsilon(), the floor Normalization puts under sqrt(variance)


@dataclass(frozen=True)
class Scaler:
    """x -> (x - mean) / sqrt(variance) on flattened 784-pixel rows, all in float32."""

    method: str
    mean: np.ndarray
    variance: np.ndarray

    def transform(self, images: np.ndarray) -> np.ndarray:
        flat = images.reshape(len(images), N_FEATURES).astype(np.float32)
        # The same expression, in the same order and precision, as keras.layers.Normalization.
        return (flat - self.mean) / np.maximum(np.sqrt(self.variance), np.float32(KERAS_EPSILON))

    def as_dict(self) -> dict:
        return {"method": self.method, "mean": self.mean.tolist(), "variance": self.variance.tolist()}

    @classmethod
    def from_dict(cls, values: dict) -> "Scaler":
        return cls(values["method"], np.asarray(values["mean"], np.float32),
                   np.asarray(values["variance"], np.float32))


@dataclass(frozen=True)
class PreparedData:
    """One preprocessing variant of the splits, ready for model.fit; the scaler travels with it."""

    scaler: Scaler
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def fit_scaler(method: str, x_train: np.ndarray) -> Scaler:
    """Fit the method's statistics on training images alone (validation and test never leak in)."""
    if method == "normalize":
        return Scaler(method, np.zeros(N_FEATURES, np.float32), np.full(N_FEATURES, 255.0**2, np.float32))
    if method == "standardize":
        # StandardScaler leaves constant pixels at scale 1 instead of dividing by zero.
        fitted = StandardScaler().fit(x_train.reshape(len(x_train), N_FEATURES).astype(np.float64))
        return Scaler(method, fitted.mean_.astype(np.float32), np.square(fitted.scale_).astype(np.float32))
    raise ValueError(f"unknown preprocessing method {method!r}; allowed: normalize, standardize")


def prepare(method: str, splits: Splits) -> PreparedData:
    scaler = fit_scaler(method, splits.x_train)
    return PreparedData(
        scaler,
        scaler.transform(splits.x_train), splits.y_train,
        scaler.transform(splits.x_val), splits.y_val,
        scaler.transform(splits.x_test), splits.y_test,
    )


def prepare_variants(methods: tuple[str, ...], splits: Splits) -> dict[str, PreparedData]:
    """Every variant the search space can ask for, computed once up front."""
    return {method: prepare(method, splits) for method in methods}
