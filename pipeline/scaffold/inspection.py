"""What the data given to `sweep init` is: its source, a table's label and columns, an .npz's task, pictures'
sizes, and the lines that tell the user. It is loaded and split through the loaders `sweep run` uses, so that
data `sweep run` would refuse is refused here with the same error, and the space is sized to the real split.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import DataConfig
from pipeline.data import KERAS_DATASETS, Splits, load_splits
from pipeline.data.idx import holds_idx
from pipeline.data.images import has_split_folders, list_classes
from pipeline.data.npz import array_names, read_arrays
from pipeline.data.records import continuous_hint
from pipeline.data.tables import READERS, read_table
from pipeline.errors import BadInputError, DataError
from pipeline.scaffold.split_sizes import Sized, sized_fractions

SEED = 42  # the split checked here is the one `sweep run` makes with the study.seed written
SMALL_TABLE = 2000  # rows: below this a table gets small networks and small batches
LABEL_NAMES = ("label", "labels", "target", "class", "y", "category", "outcome")  # a table's label, by name
MANY_CATEGORIES = 50  # a text column with more values is warned about: an identifier or free text, likely
IMBALANCE = 10  # the largest class over the smallest above this is warned about
MAX_SIDE = 64  # pictures larger than this on a side are resized to it: a search needs many fast trials


@dataclass(frozen=True)
class Found:
    """What inspecting the data found: the data settings as the file writes them, the split `sweep run` will
    make, and what to tell the user."""

    name: str
    data: DataConfig
    splits: Splits
    notes: tuple[str, ...]


def inspect(data: Path, label: str | None, name: str) -> Found:
    """The data as `sweep run` loads and splits it, with what was inferred on the way."""
    sized = _source_settings(data, label)
    settings, notes = sized.data, list(sized.notes)
    if settings.dataset in KERAS_DATASETS:  # Keras' loaders load TensorFlow: quietly, as a worker does
        from pipeline.tensorflow_setup import load_tensorflow

        load_tensorflow()
    # Loaded, checked against memory and split as a worker does, from data_dir as written: the same errors.
    try:
        splits = load_splits(settings, SEED)
    except DataError as exc:
        raise sized.refused(exc) from None
    notes += _describe_inputs(splits)
    notes += _describe_labels(splits, settings.validation_fraction)
    return Found(name, settings, splits, tuple(notes))


def _source_settings(data: Path, label: str | None) -> Sized:
    """The data section for this source, the way the loaders tell sources apart, and notes on it."""
    text = str(data)
    if not data.exists() and text in KERAS_DATASETS:
        return Sized(DataConfig(dataset=text), (f"Source: Keras' dataset {text} (loaded by Keras, downloaded if "
                                                "missing)",))
    where, how = _written_path(data)
    data = Path(where)  # read as `sweep run` will read it, so that errors name it alike
    if data.suffix.lower() in READERS:
        return _table_settings(data, where, label, how)
    if data.suffix.lower() == ".npz":
        labels = _npz_labels(data)
        task = _npz_task(labels)
        return sized_fractions(DataConfig(dataset="npz", data_dir=where, task=task),
                               [f"Source: an .npz file, {where} ({how})"],
                               _counted(labels) if task == "classification" else None, test_part=False)
    if data.is_dir() and holds_idx(data):
        return Sized(DataConfig(dataset="idx", data_dir=where), (f"Source: a folder of IDX files, {where} ({how})",))
    if data.is_dir():
        size, resized = _picture_size(data)
        split = has_split_folders(data)
        layout = "train/ and test/ class folders" if split else "class folders"
        counts = {name: len(files) for name, files in list_classes(data / "train" if split else data).items()}
        return sized_fractions(DataConfig(dataset="images", data_dir=where, image_size=size),
                               [f"Source: a folder of pictures in {layout}, {where} ({how})", *resized], counts,
                               test_part=not split)
    kinds = ("a folder of IDX files or of class folders of pictures, a CSV or Parquet table, an .npz file, or one "
             f"of Keras' datasets ({', '.join(KERAS_DATASETS)})")
    raise DataError(f"{data}: {'not one of the sources' if data.exists() else 'no such file or folder'}; sweep init "
                    f"reads {kinds}")


def _written_path(data: Path) -> tuple[str, str]:
    """data.data_dir as `sweep run` finds it: relative to the current folder when inside it, else absolute."""
    absolute = data.expanduser().resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve())), "written relative to this folder"
    except ValueError:
        return str(absolute), "written as an absolute path"


def _table_settings(path: Path, where: str, label: str | None, how: str) -> Sized:
    """The label (by --label, by name, else the last column), text columns as categorical, gaps imputed, and
    regression for a numeric label the loader would call a measurement (records.continuous_hint)."""
    frame = read_table(path)
    columns = [str(c) for c in frame.columns]
    if label is not None and label not in columns:
        raise BadInputError(f"--label {label}: {path} has no such column; its columns are {_listed(columns)}")
    named = [c for c in columns if c.lower() in LABEL_NAMES]
    chosen = label or (named[0] if named else columns[-1])
    why = "--label" if label else "its name" if named else "the last column; --label NAME picks another"
    column = frame[chosen]
    numeric = _numeric(column) and column.dtype != bool
    task = "regression" if numeric and continuous_hint(column.to_numpy(dtype=np.float64)) else "classification"
    categorical = tuple(c for c in columns if c != chosen and not _numeric(frame[c]))
    gaps = frame.drop(columns=chosen).isna().sum()
    unlabelled = int(column.isna().sum())
    missing = "impute" if gaps.any() else "drop" if unlabelled else "refuse"  # refuse would refuse those rows
    notes = [f"Source: a table, {where} ({how}): {len(frame)} rows, {len(columns) - 1 - len(categorical)} numeric "
             f"feature columns" + (f", text columns {_listed(categorical)} (one-hot: data.categorical)"
                                   if categorical else ""),
             f"Label: {chosen!r} ({why})"]
    many = [c for c in categorical if frame[c].nunique() > MANY_CATEGORIES]
    if many:
        notes.append(f"warning: text columns with over {MANY_CATEGORIES} values: {_listed(many)}; one-hot encoding "
                     "learns little from so many (an identifier, or free text?): remove them from the table if so")
    if unlabelled:
        notes.append(f"Rows without a label: {unlabelled} (no {chosen!r}); left out, as `sweep run` leaves them out")
    if gaps.any():
        notes.append("Missing values in " + ", ".join(f"{c!r} ({n} rows)" for c, n in gaps[gaps > 0].items())
                     + ": data.missing impute (numbers by the mean, text by the most frequent, fitted on train)")
    labelled = column.dropna()
    settings = DataConfig(dataset="table", data_dir=where, label=chosen, categorical=categorical, missing=missing,
                          task=task, validation_fraction=0.2 if len(labelled) < SMALL_TABLE else 0.1)
    counts = None if task == "regression" else {str(k): int(n) for k, n in labelled.value_counts().items()}
    return sized_fractions(settings, notes, counts, test_part=True)


def _numeric(column) -> bool:
    """Numbers or booleans, as the table loader takes them without data.categorical."""
    import pandas as pd

    return pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


def _npz_labels(path: Path) -> np.ndarray | None:
    """y_train as one label per input; None when the file lacks it, or holds another shape: the loader says so."""
    if not path.is_file() or "y_train" not in array_names(path):
        return None
    labels = read_arrays(path, ["y_train"])["y_train"]
    labels = labels[:, 0] if labels.ndim == 2 and labels.shape[1] == 1 else labels
    return labels if labels.ndim == 1 else None


def _counted(labels: np.ndarray | None) -> dict[str, int] | None:
    if labels is None:
        return None
    values, counts = np.unique(labels, return_counts=True)
    return {str(value): int(count) for value, count in zip(values.tolist(), counts)}


def _npz_task(labels: np.ndarray | None) -> str:
    """regression when y_train holds fractions, or numbers the loader would call a measurement."""
    if labels is None or labels.dtype.kind not in "iuf":
        return "classification"
    fractional = labels.dtype.kind == "f" and not np.all(np.mod(labels[np.isfinite(labels)], 1) == 0)
    return "regression" if fractional or continuous_hint(labels.reshape(-1)) else "classification"


def _picture_size(root: Path) -> tuple[tuple[int, int] | None, list[str]]:
    """data.image_size: None when every picture shares one size of at most MAX_SIDE a side; else the most
    common size, shrunk to fit MAX_SIDE. Read from the pictures' headers; the loader refuses what they lack."""
    from PIL import Image

    folders = [root / "train", root / "test"] if has_split_folders(root) else [root]
    sizes = Counter()
    for files in (files for folder in folders for files in list_classes(folder).values()):
        for path in files:
            try:
                with Image.open(path) as image:
                    sizes[image.size] += 1
            except (OSError, SyntaxError, ValueError):
                return None, []  # not a picture: the loader says which
    (width, height), _ = sizes.most_common(1)[0]
    scale = min(1.0, MAX_SIDE / max(width, height))
    if len(sizes) == 1 and scale == 1.0:
        return None, []
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    common = f"{height}x{width} (height x width)"
    why = f"{len(sizes)} different sizes, most often {common}" if len(sizes) > 1 else common
    return size, [f"Pictures: {why}; data.image_size {list(size)} (height, width) resizes them all"]


def _describe_inputs(splits: Splits) -> list[str]:
    inputs, rows = splits.inputs, f"{len(splits.y_train)} training, {len(splits.y_val)} validation, " \
                                  f"{len(splits.y_test)} test"
    if inputs.is_table:
        return [f"Split: {rows} rows"]
    if not inputs.shape:
        return [f"Inputs: one number per example ({inputs.dtype}); split: {rows}"]
    return [f"Inputs: {' x '.join(map(str, inputs.shape))} of {inputs.dtype} ({_picture_kind(splits)}); split: {rows}"]


def _picture_kind(splits: Splits) -> str:
    shape = splits.inputs.shape
    if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
        return "grayscale pictures"
    if len(shape) == 3:
        return f"pictures with {shape[2]} channels"
    return "vectors of features" if len(shape) == 1 else "arrays"


def _describe_labels(splits: Splits, validation_fraction: float) -> list[str]:
    """The task and the classes with their counts in training and validation together; warnings on imbalance and on classes so small
    that validation holds fewer than two of them."""
    if splits.task == "regression":
        y = splits.y_train
        return [f"Task: regression of {splits.class_names[0]!r} (numbers from {y.min():g} to {y.max():g}, mean "
                f"{y.mean():.4g}, sd {y.std():.4g}); the study minimizes val_rmse"]
    counts = np.bincount(np.concatenate([splits.y_train, splits.y_val]), minlength=len(splits.class_names))
    shown = ", ".join(f"{name} {count}" for name, count in zip(splits.class_names[:12], counts))
    more = f" and {len(counts) - 12} more" if len(counts) > 12 else ""
    notes = [f"Task: classification, {len(counts)} classes (examples each, before the validation split): "
             f"{shown}{more}"]
    present = counts[counts > 0]
    if present.max() > IMBALANCE * present.min():
        big = int(np.argmax(counts))
        small = min((i for i, count in enumerate(counts) if count), key=lambda i: counts[i])
        notes.append(f"warning: imbalanced classes: {splits.class_names[big]!r} has {counts[big]} examples, "
                     f"{splits.class_names[small]!r} {counts[small]}; accuracy will mostly reflect the large "
                     "classes (gather more of the small ones, or merge them)")
    few = [(name, count) for name, count in zip(splits.class_names, counts) if 0 < count * validation_fraction < 2]
    if few:
        notes.append(f"warning: classes too small to split well: {', '.join(f'{n!r} ({c})' for n, c in few[:10])}"
                     f"; validation ({validation_fraction:g} of training) holds fewer than 2 of each, so their "
                     "score is noise (gather more examples, or merge them)")
    return notes


def _listed(names) -> str:
    names = [repr(str(n)) for n in names]
    return ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
