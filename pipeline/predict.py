"""Predictions from an exported or registered model: class names and probabilities for the user's inputs, or a
regression's value, in the label's units and named after it.

The model says what it takes (its input's shape and dtype, or a table's columns) and what it predicts (its
name is its task's: pipeline.tasks), and the export or the MLflow model says its class names (a regression's:
the label's name alone). Inputs come as they are: pictures of any size and mode (converted to
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
REGRESSION_VALUE = "value"  # a regression model's one output, named so when nothing says its label's name


@dataclass(frozen=True)
class Classifier:
    """A loaded model with what it takes and the names of what it tells apart (a regression's: its label)."""

    model: object
    class_names: tuple[str, ...]
    regression: bool = False  # one value out, in the label's units, named class_names[0]

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
class Estimate:
    """A regression's prediction for one input: the label's value, in its units."""

    source: str
    index: int
    value: float
    label: str

    def as_dict(self) -> dict:
        return {"input": self.source, "index": self.index, self.label: self.value}

    def line(self) -> str:
        return f"{self.source}[{self.index}]\t{self.label}={self.value:.6g}"


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

    def line(self) -> str:
        return f"{self.source}[{self.index}]\t{self.label}\t{self.probabilities.max():.4f}"


def load_model(spec: str, tracking_uri: str | None = None) -> Classifier:
    """An export folder, a .keras file (loaded with safe_mode), or a models:/ or runs:/ URI."""
    if spec.startswith(("models:/", "runs:/")):
        from pipeline.tracking import models

        try:
            model, names = models.load_model(spec, tracking_uri), models.class_names(spec)
        except TrackingError as exc:
            raise PredictError(str(exc)) from None
        return _loaded(model, names)
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
    metadata = json.loads((folder / METADATA_FILE).read_text()) if (folder / METADATA_FILE).is_file() else {}
    names = [metadata["label"]] if "label" in metadata else metadata.get("class_names")
    return _loaded(model, tuple(names) if names else None)


def _loaded(model, names: tuple[str, ...] | None) -> Classifier:
    """The model with what it predicts: a regression (its task's model name) one value named after its label."""
    from pipeline.tasks import TASKS

    if {module.MODEL_NAME: task for task, module in TASKS.items()}.get(model.name) == "regression":
        return Classifier(model, names or (REGRESSION_VALUE,), regression=True)
    return Classifier(model, names or _numbered(model))


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


def predict_files(classifier: Classifier, paths: list[Path]) -> list[Prediction | Estimate]:
    predictions = []
    for path in paths:
        outputs = np.asarray(classifier.model.predict(read_inputs(path, classifier), verbose=0))
        outputs = outputs.reshape(len(outputs), -1)
        lost = int(np.count_nonzero(~np.isfinite(outputs).all(axis=-1)))
        if lost:  # never print "nan" as a class's probability or a value, nor a bare NaN in --json
            said = f"{classifier.class_names[0]} values" if classifier.regression else "probabilities"
            raise PredictError(f"{path}: the model's {said} for {lost} input(s) are NaN or infinite: their values "
                               "are too far outside what it was trained on; scale them as the training data was")
        if classifier.regression:
            label = classifier.class_names[0]
            predictions += [Estimate(str(path), i, float(value), label) for i, value in enumerate(outputs[:, 0])]
        else:
            predictions += [Prediction(str(path), i, p, classifier.class_names) for i, p in enumerate(outputs)]
    return predictions


def format_predictions(predictions: list[Prediction | Estimate], as_json: bool) -> str:
    """One line per input (classes: the class and its probability; a regression: label=value), or JSON."""
    if as_json:
        return json.dumps([p.as_dict() for p in predictions], indent=2)
    return "\n".join(p.line() for p in predictions)


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

