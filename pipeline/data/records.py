"""What every data source gives: the raw arrays with their class names, and the three-way split.

Arrays stay as the source has them (uint8 images, float features, a table's rows as a structured array
with one field per column): the model's own preprocessing layers turn them into what the network needs,
so the model takes what a user has.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DataError

FLOAT32_MAX = float(np.finfo(np.float32).max)  # the network computes in float32: beyond this is inf there
CONTINUOUS_CLASSES = 20  # more distinct numeric labels than this, fractional or unique to a row, read as a measurement


@dataclass(frozen=True)
class RawData:
    """A dataset as its source holds it: inputs (N x shape) and integer labels 0..K-1 naming class_names, or
    (task regression) float64 numbers with class_names the label's name alone."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    class_names: tuple[str, ...]
    task: str = "classification"

    def digest(self) -> str:
        return array_digest(self.x_train, self.y_train, self.x_test, self.y_test)


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: arrays of one shape and dtype, or (a table) one named input per column."""

    shape: tuple[int, ...]
    dtype: str
    columns: tuple[tuple[str, str], ...] = ()  # a table's (name, "number" | "text") in the file's order

    @classmethod
    def of(cls, x: np.ndarray) -> "InputSpec":
        if x.dtype.names is None:
            return cls(tuple(x.shape[1:]), x.dtype.name)
        kinds = tuple((name, "text" if x.dtype[name].kind == "U" else "number") for name in x.dtype.names)
        return cls((len(kinds),), "table", kinds)

    @property
    def is_table(self) -> bool:
        return bool(self.columns)

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(height, width, channels) for images (a grayscale one gets its channel axis); None for a table or
        a vector of features, which have no pixels to convolve over."""
        if self.is_table or len(self.shape) not in (2, 3):
            return None
        return (*self.shape[:2], self.shape[2] if len(self.shape) == 3 else 1)

    def describe(self) -> dict:
        """As metadata.json and the report state it."""
        if self.is_table:
            return {"columns": {name: kind for name, kind in self.columns}}
        return {"shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class Splits:
    """Raw inputs split three ways; train fits, validation chooses, test is only reported."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    fills_gaps: bool = False  # a table whose study imputes: its model fills gaps with the training split's values
    task: str = "classification"  # regression: y holds numbers, and class_names is the label's name alone

    @property
    def inputs(self) -> InputSpec:
        return InputSpec.of(self.x_train)

    @property
    def regression_targets(self) -> np.ndarray | None:
        """The training labels a regression model standardizes its target by (preprocessing.fit_stats);
        None for classes."""
        return self.y_train if self.task == "regression" else None

    def train_digest(self) -> str:
        return array_digest(self.x_train, self.y_train)

    def with_validation_in_train(self) -> "Splits":
        """Train and validation together (a refit); the test set stays apart."""
        return dataclasses.replace(
            self, x_train=np.concatenate([self.x_train, self.x_val]),
            y_train=np.concatenate([self.y_train, self.y_val]), x_val=self.x_val[:0], y_val=self.y_val[:0])


def array_digest(*arrays: np.ndarray) -> str:
    """A short content hash, so a run records exactly which data it saw."""
    sha = hashlib.sha256()
    for array in arrays:
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()[:16]


def checked(raw: RawData) -> RawData:
    """The same input shape in train and test, one label per input: an integer naming a class, or (task
    regression) a finite number."""
    for split in ("train", "test"):
        inputs, labels = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
        if len(inputs) != len(labels) or labels.ndim != 1:
            raise DataError(f"{raw.source}: {split} has {len(inputs)} inputs for labels of shape {labels.shape}; "
                            "expected one label per input")
        if inputs.dtype.kind not in "uif" and inputs.dtype.names is None:
            raise DataError(f"{raw.source}: {split} inputs are {inputs.dtype}; expected numbers")
        count, example = unusable_values(inputs)
        if count:
            raise DataError(f"{raw.source}: x_{split} holds {count} value(s) that are NaN, infinite or beyond "
                            f"float32's range (e.g. {example}); replace or drop them, a model trained on them "
                            "predicts one class for everything")
        if raw.task == "regression":
            _check_numbers(raw.source, split, labels)
            continue
        top = len(raw.class_names) - 1
        if labels.dtype.kind not in "iu" or (len(labels) and (labels.min() < 0 or labels.max() > top)):
            low, high = (labels.min(), labels.max()) if len(labels) else (0, 0)
            hint = continuous_hint(labels) if labels.dtype.kind == "f" else None
            raise DataError(f"{raw.source}: {split} labels must be integers 0..{top} (one per class name), "
                            f"found {labels.dtype} from {low} to {high}" + (f"; {hint}" if hint else ""))
    if raw.x_train.shape[1:] != raw.x_test.shape[1:]:
        raise DataError(f"{raw.source}: training inputs are {raw.x_train.shape[1:]} but test inputs "
                        f"{raw.x_test.shape[1:]}; both must have one shape")
    return raw


def continuous_hint(values: np.ndarray) -> str | None:
    """Why numeric class labels read as a measurement: more than CONTINUOUS_CLASSES distinct values, and
    either some of them fractional, or some value on a single row (unless they are the codes 0..K-1), or more
    distinct values than half the rows (whole numbers such as a score of 25-346: such classes are too small to
    split stratified).
    None for labels that look like classes."""
    distinct, counts = np.unique(values[~np.isnan(values)] if values.dtype.kind == "f" else values,
                                 return_counts=True)
    fractional = values.dtype.kind == "f" and not np.all(np.mod(distinct, 1) == 0)
    codes = np.array_equal(distinct, np.arange(len(distinct)))  # 0..K-1: class codes, one of them rare
    lonely = bool((counts == 1).any()) and not codes
    if len(distinct) <= CONTINUOUS_CLASSES or not (fractional or lonely or len(distinct) > len(values) / 2):
        return None
    examples = ", ".join(f"{v:g}" for v in distinct[:3])
    return (f"{len(distinct)} distinct numeric values in {len(values)} rows (e.g. {examples}) look like a "
            "measurement, not classes; to predict the number set `task: regression` in the sweep file")


def _check_numbers(source: str, split: str, labels: np.ndarray) -> None:
    """A regression's labels: numbers, every one finite (a NaN or infinite target has no error to learn from)."""
    if labels.dtype.kind not in "iuf":
        raise DataError(f"{source}: {split} labels are {labels.dtype}; task regression needs numbers")
    bad = np.flatnonzero(~(np.abs(labels.astype(np.float64)) <= FLOAT32_MAX))
    if len(bad):
        rows = ", ".join(str(r) for r in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise DataError(f"{source}: {len(bad)} {split} label(s) are NaN, infinite or beyond float32's range "
                        f"(rows {rows}, e.g. {labels[bad[0]]}); task regression needs a finite number per input")


def unusable_values(x: np.ndarray) -> tuple[int, float | None]:
    """How many of a float array's values the network cannot compute with (NaN, inf, or beyond float32), and
    the first of them; counted over blocks of rows, so no mask the size of the data is made."""
    if x.dtype.kind != "f" or x.dtype.names is not None or not x.size:
        return 0, None
    flat = x.reshape(len(x), -1)
    step = max(1, 2**24 // flat.shape[1])
    count, example = 0, None
    for start in range(0, len(flat), step):
        bad = ~(np.abs(flat[start:start + step]) <= FLOAT32_MAX)  # NaN compares False
        found = int(np.count_nonzero(bad))
        if found and example is None:
            example = float(flat[start:start + step][bad][0])
        count += found
    return count, example


def numbered_classes(*label_arrays: np.ndarray) -> tuple[str, ...]:
    """Class names "0".."K-1" for sources that carry no names."""
    top = max((int(labels.max()) for labels in label_arrays if len(labels)), default=0)
    return tuple(str(i) for i in range(top + 1))


def portable_folder(data_dir: str | None, base: Path | None) -> str | None:
    """A data folder as a store records it: relative to `base` (the sweep file's folder) when inside it,
    so a store shared with colleagues does not spread one person's home paths, else (and with no base: a
    sweep given as a dict) absolute; None for Keras' loader."""
    if data_dir is None:
        return None
    folder = Path(data_dir).expanduser().resolve()
    if base is None:
        return str(folder)
    try:
        return str(folder.relative_to(base.resolve()))
    except ValueError:
        return str(folder)


def describe_folder(data_dir: str | None) -> str:
    return "Keras' own copy of the dataset" if data_dir is None else f"the data in {data_dir}"


def located_folder(recorded: str | None, base: Path | None) -> str | None:
    """The inverse of portable_folder: a recorded folder, found again from the sweep file's folder."""
    if recorded is None or Path(recorded).is_absolute():
        return recorded
    return str((base or Path(".")) / recorded)
