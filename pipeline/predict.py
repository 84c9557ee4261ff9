"""Predictions from an exported model: class names and probabilities for images, IDX files or Kaggle CSVs.

Inputs are raw pixels whatever their form: PNG/JPEG of any size and mode are converted to 28x28
grayscale, exactly what the exported model expects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data import CLASS_NAMES, read_idx, read_kaggle_csv
from pipeline.errors import DataError, PredictError, TrackingError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Prediction:
    source: str
    index: int
    probabilities: np.ndarray

    @property
    def label(self) -> str:
        return CLASS_NAMES[int(self.probabilities.argmax())]

    def as_dict(self) -> dict:
        return {"input": self.source, "index": self.index, "class": self.label,
                "probability": float(self.probabilities.max()),
                "probabilities": {n: float(p) for n, p in zip(CLASS_NAMES, self.probabilities)}}


def load_model(spec: str, tracking_uri: str | None = None):
    """An export folder, a .keras file (loaded with safe_mode), or a models:/ URI from the registry."""
    if spec.startswith(("models:/", "runs:/")):
        from pipeline.tracking import models

        try:
            return models.load_model(spec, tracking_uri)
        except TrackingError as exc:
            raise PredictError(str(exc)) from None
    path = Path(spec)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise PredictError(f"{spec}: no model here; expected an export folder holding model.keras, a .keras "
                           "file, or a models:/NAME@alias URI")
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)  # predictions need no optimizer
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise PredictError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from None


def read_images(path: Path) -> np.ndarray:
    """Raw uint8 N x 28 x 28 images from one input file."""
    if not path.is_file():
        raise PredictError(f"{path}: no such input file")
    suffix = path.suffix.lower()
    try:
        if suffix in IMAGE_SUFFIXES:
            return _read_picture(path)
        if suffix == ".csv":
            return read_kaggle_csv(path)[0]
        images = read_idx(path)
    except DataError as exc:
        raise PredictError(str(exc)) from None
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise PredictError(f"{path}: holds arrays of shape {images.shape}; expected N x 28 x 28 images")
    return images


def predict_files(model, paths: list[Path]) -> list[Prediction]:
    predictions = []
    for path in paths:
        probabilities = np.asarray(model.predict(read_images(path), verbose=0))
        predictions += [Prediction(str(path), i, p) for i, p in enumerate(probabilities)]
    return predictions


def format_predictions(predictions: list[Prediction], as_json: bool) -> str:
    if as_json:
        return json.dumps([p.as_dict() for p in predictions], indent=2)
    return "\n".join(f"{p.source}[{p.index}]\t{p.label}\t{p.probabilities.max():.4f}" for p in predictions)


def _read_picture(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            gray = image.convert("L").resize((28, 28), Image.Resampling.LANCZOS)
    except Image.DecompressionBombError as exc:  # Pillow's guard against images that would fill memory
        raise PredictError(f"{path}: refused, the image is too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise PredictError(f"{path}: cannot decode the image ({exc}); expected a PNG or JPEG picture") from None
    return np.asarray(gray, dtype=np.uint8)[np.newaxis]
