"""Predictions from an exported or registered model: class names and probabilities for the user's inputs.

The model says what it takes (its input's shape and dtype, or a table's columns) and the export or the
MLflow model says its class names. Inputs come as they are: pictures of any size and mode (converted to
the model's channels and resized to its input), IDX files, CSV rows of pixels with or without a label
column, .npz files; for a table's model, CSV or Parquet rows (columns the model does not take, such as
the label, are ignored).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data import read_idx, read_pixel_csv
from pipeline.data.images import SUFFIXES as IMAGE_SUFFIXES
from pipeline.data.images import decode
from pipeline.data.npz import array_names, read_arrays
from pipeline.data.records import unusable_values
from pipeline.data.tables import read_table
from pipeline.errors import DataError, PredictError, TrackingError

METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class Classifier:
    """A loaded model with what it takes and the names of what it tells apart."""

    model: object
    class_names: tuple[str, ...]

    @property
    def is_table(self) -> bool:
        """A table's model takes a dict of named columns; a Sequential model never called has no `.input`."""
        try:
            return isinstance(self.model.input, dict)
        except AttributeError:
            return False

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.model.inputs[0].shape[1:])

    @property
    def input_dtype(self) -> str:
        return str(self.model.inputs[0].dtype)


@dataclass(frozen=True)
class Prediction:
    source: str
    index: int
    probabilities: np.ndarray
    class_names: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.class_names[int(self.probabilities.argmax())]

    def as_dict(self) -> dict:
        return {"input": self.source, "index": self.index, "class": self.label,
                "probability": float(self.probabilities.max()),
                "probabilities": {n: float(p) for n, p in zip(self.class_names, self.probabilities)}}


def load_model(spec: str, tracking_uri: str | None = None) -> Classifier:
    """An export folder, a .keras file (loaded with safe_mode), or a models:/ or runs:/ URI."""
    if spec.startswith(("models:/", "runs:/")):
        from pipeline.tracking import models

        try:
            model, names = models.load_model(spec, tracking_uri), models.class_names(spec)
        except TrackingError as exc:
            raise PredictError(str(exc)) from None
        return Classifier(model, names or _numbered(model))
    path = Path(spec)
    folder = path if path.is_dir() else path.parent
    path = path / "model.keras" if path.is_dir() else path
    if not path.is_file():
        raise PredictError(f"{spec}: no model here; expected an export folder holding model.keras, a .keras "
                           "file, or a models:/NAME@alias URI")
    if not zipfile.is_zipfile(path):  # Keras would call it "File not found"
        raise PredictError(f"{path}: cannot be read as a Keras model file: a .keras file is a zip archive, as "
                           "keras.Model.save writes it, and this is not one")
    import keras

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)  # predictions need no optimizer
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise PredictError(f"{path}: cannot be read as a Keras model file ({type(exc).__name__}: {exc})") from None
    metadata = folder / METADATA_FILE
    names = json.loads(metadata.read_text()).get("class_names") if metadata.is_file() else None
    return Classifier(model, tuple(names) if names else _numbered(model))


def read_inputs(path: Path, classifier: Classifier):
    """The inputs one file holds, shaped and typed as the model takes them."""
    if path.is_dir():
        raise PredictError(f"{path}: is a folder; give the files in it (e.g. {path}/*.png)")
    if not path.is_file():
        raise PredictError(f"{path}: no such input file")
    if classifier.is_table:
        return _read_rows(path, classifier)
    shape, suffix = classifier.input_shape, path.suffix.lower()
    try:
        if suffix in IMAGE_SUFFIXES:
            inputs = _read_picture(path, shape)
        elif suffix == ".csv":
            inputs = read_pixel_csv(path, shape, pixels=classifier.input_dtype == "uint8")[0]
        elif suffix == ".npz":
            inputs = _read_npz(path)
        else:
            inputs = read_idx(path)
    except DataError as exc:
        raise PredictError(str(exc)) from None
    if inputs.shape[1:] != shape:
        raise PredictError(f"{path}: holds inputs of shape {inputs.shape[1:]}; the model takes {shape}")
    _check_values(path, inputs, classifier.input_dtype)
    return inputs.astype(classifier.input_dtype, copy=False)


def predict_files(classifier: Classifier, paths: list[Path]) -> list[Prediction]:
    predictions = []
    for path in paths:
        probabilities = np.asarray(classifier.model.predict(read_inputs(path, classifier), verbose=0))
        lost = int(np.count_nonzero(~np.isfinite(probabilities).all(axis=-1)))
        if lost:  # never print "nan" as a class's probability, nor a bare NaN in --json
            raise PredictError(f"{path}: the model's probabilities for {lost} input(s) are NaN: their values are "
                               "too far outside what it was trained on; scale them as the training data was")
        predictions += [Prediction(str(path), i, p, classifier.class_names) for i, p in enumerate(probabilities)]
    return predictions


def format_predictions(predictions: list[Prediction], as_json: bool) -> str:
    if as_json:
        return json.dumps([p.as_dict() for p in predictions], indent=2)
    return "\n".join(f"{p.source}[{p.index}]\t{p.label}\t{p.probabilities.max():.4f}" for p in predictions)


def _read_rows(path: Path, classifier: Classifier) -> dict:
    """A table's rows as the model's named inputs."""
    from pipeline.tracking.table_pyfunc import table_feed

    try:
        return table_feed(classifier.model, read_table(path))
    except DataError as exc:
        raise PredictError(str(exc)) from None
    except ValueError as exc:
        raise PredictError(f"{path}: {exc}") from None


def _numbered(model) -> tuple[str, ...]:
    return tuple(str(i) for i in range(int(model.outputs[0].shape[-1])))


def _read_picture(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """One picture as the model takes it: gray for H x W inputs, RGB for H x W x 3, resized."""
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] != 3):
        raise PredictError(f"{path}: the model takes inputs of shape {shape}, not pictures")
    return decode(path, shape[:2], "L" if len(shape) == 2 else "RGB")[np.newaxis]


def _read_npz(path: Path) -> np.ndarray:
    """`x`, else `x_test`, else the file's only array."""
    names = array_names(path)
    for key in ("x", "x_test", *(names if len(names) == 1 else ())):
        if key in names:
            return read_arrays(path, [key])[key]
    raise PredictError(f"{path}: holds {len(names)} arrays; name the inputs x (or x_test)")


def _check_values(path: Path, inputs: np.ndarray, dtype: str) -> None:
    """Inputs the model takes as they are. For a uint8 model, whole numbers 0..255 (a cast would turn 300 into
    44 and 0.5 into 0); otherwise numbers that are finite in float32 (NaN, inf or 1e39 give NaN probabilities)."""
    if dtype == "uint8" and inputs.dtype != np.uint8:
        outside = ~((inputs >= 0) & (inputs <= 255) & (inputs == np.round(inputs)))
        if outside.any():
            raise PredictError(f"{path}: holds {np.count_nonzero(outside)} value(s) that are not whole numbers "
                               f"0..255 (e.g. {inputs[outside][0]}); the model takes pixels as 8-bit values")
    count, example = unusable_values(inputs)
    if count:
        raise PredictError(f"{path}: holds {count} value(s) that are NaN, infinite or beyond float32's range "
                           f"(e.g. {example}); the model takes finite numbers")

