"""Tables, CSV or Parquet (read with pandas): a label column, numeric feature columns and categorical ones.

The rows become a NumPy structured array with one field per feature column (float32 for numbers, text for
the categorical columns), so the split, the digests and the memory check treat a table like any other
input, and the model gets one named input per column: it takes rows as they come, strings included.

Missing values are refused by default, naming each column and how many rows. `data.missing: drop` drops
those rows (train and test alike); `impute` fills numbers with the training split's mean and categories
with its most frequent value, fitted after the split so that neither validation nor test leaks in.
Rows without a label are dropped with `drop` or `impute`: a label cannot be imputed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import DataConfig
from pipeline.data.records import RawData, Splits, checked
from pipeline.data.split import stratified_split
from pipeline.errors import DataError

READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}
MISSING_TEXT = ""  # a categorical value that is missing, as the structured array holds it


def load_table(path: Path, data: DataConfig, seed: int) -> RawData:
    """The table's features and labels; the test rows from data.test_file, else a stratified, seeded split."""
    train = _prepared(read_table(path), path, data)
    test_path = _test_path(path, data.test_file)
    test = _prepared(read_table(test_path), test_path, data) if test_path else None
    features = _feature_columns(train, path, data)
    class_names = _class_names(train[data.label], test[data.label] if test is not None else None)
    codes = {name: index for index, name in enumerate(class_names)}
    x, y = _records(train, features, data.categorical), _labels(train[data.label], codes)
    if test is None:
        x, x_test, y, y_test = stratified_split(x, y, data.test_fraction, seed, str(path), "data.test_fraction")
    else:
        _check_same_columns(test, features, test_path)
        x_test, y_test = _records(test, features, data.categorical), _labels(test[data.label], codes)
        x, x_test = _common_widths(x, x_test)
    return checked(RawData(x, y, x_test, y_test, source=str(path.resolve()), class_names=class_names))


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame; an empty one is refused."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: a table must be a CSV or Parquet file ({', '.join(READERS)})")
    if not path.is_file():
        raise DataError(f"{path}: no such table")
    try:
        frame = reader(path)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot read it as a {path.suffix.lower()[1:].upper()} table "
                        f"({type(exc).__name__}: {exc})") from None
    if frame.empty:
        raise DataError(f"{path}: the table holds no rows")
    return frame


def impute(splits: Splits) -> Splits:
    """Missing values filled from the training split alone: numbers with its mean, categories with its most
    frequent value."""
    train = splits.x_train
    fills = {}
    for name in train.dtype.names:
        column = train[name]
        if column.dtype.kind == "U":
            present = column[column != MISSING_TEXT]
            values, counts = np.unique(present, return_counts=True)
            fills[name] = values[counts.argmax()] if len(values) else MISSING_TEXT
        else:
            fills[name] = np.nanmean(column) if np.isfinite(column).any() else 0.0
    filled = {key: _filled(getattr(splits, key), fills) for key in ("x_train", "x_val", "x_test")}
    return dataclasses.replace(splits, **filled)


def _filled(x: np.ndarray, fills: dict) -> np.ndarray:
    x = x.copy()
    for name, value in fills.items():
        missing = x[name] == MISSING_TEXT if x[name].dtype.kind == "U" else np.isnan(x[name])
        x[name][missing] = value
    return x


def _test_path(path: Path, test_file: str | None) -> Path | None:
    """The test table: an absolute path, or one relative to the training table's folder (so `--data-dir`
    pointing at another folder finds its own test file)."""
    if test_file is None:
        return None
    test = Path(test_file).expanduser()
    return test if test.is_absolute() else path.parent / test


def _prepared(frame: pd.DataFrame, path: Path, data: DataConfig) -> pd.DataFrame:
    """The label and categorical columns present; missing values refused, dropped, or kept for imputing."""
    absent = [c for c in (data.label, *data.categorical) if c not in frame.columns]
    if absent:
        raise DataError(f"{path}: no column {', '.join(map(repr, absent))}; the table's columns are "
                        f"{_listed(frame.columns)}")
    if data.missing == "refuse":
        counts = frame.isna().sum()
        if counts.any():
            found = ", ".join(f"{name!r} ({count} rows)" for name, count in counts[counts > 0].items())
            raise DataError(f"{path}: missing values in {found}; set data.missing to drop (those rows) or impute "
                            "(mean or most frequent, fitted on the training split)")
    elif data.missing == "drop":
        frame = frame.dropna()
    frame = frame.dropna(subset=[data.label])
    if frame.empty:
        raise DataError(f"{path}: no rows left once rows with missing values are dropped")
    return frame


def _feature_columns(frame: pd.DataFrame, path: Path, data: DataConfig) -> list[str]:
    """Every column but the label; a non-numeric one must be listed as categorical."""
    features = [str(c) for c in frame.columns if c != data.label]
    if not features:
        raise DataError(f"{path}: no feature columns besides the label {data.label!r}")
    for name in features:
        if name not in data.categorical and not (pd.api.types.is_numeric_dtype(frame[name])
                                                 or pd.api.types.is_bool_dtype(frame[name])):
            example = frame[name].dropna().iloc[0] if frame[name].notna().any() else None
            raise DataError(f"{path}: column {name!r} is not numeric (e.g. {example!r}); list it in "
                            "data.categorical to one-hot encode it, or remove it from the table")
    return features


def _check_same_columns(test: pd.DataFrame, features: list[str], path: Path) -> None:
    absent = [c for c in features if c not in test.columns]
    if absent:
        raise DataError(f"{path}: the test table lacks the feature column(s) {', '.join(map(repr, absent))}")


def _class_names(train: pd.Series, test: pd.Series | None) -> tuple[str, ...]:
    """The label values, sorted (numbers numerically), as text."""
    values = pd.concat([train, test]) if test is not None else train
    return tuple(str(v) for v in sorted(values.unique(), key=lambda v: (isinstance(v, str), v)))


def _labels(column: pd.Series, codes: dict[str, int]) -> np.ndarray:
    return np.array([codes[str(v)] for v in column], dtype=np.int64)


def _records(frame: pd.DataFrame, features: list[str], categorical: tuple[str, ...]) -> np.ndarray:
    """The feature columns as one structured array: float32 numbers (NaN where missing), categorical text."""
    columns = {}
    for name in features:
        if name in categorical:
            columns[name] = frame[name].map(lambda v: MISSING_TEXT if pd.isna(v) else str(v)).to_numpy(dtype=str)
        else:
            columns[name] = frame[name].to_numpy(dtype=np.float32, na_value=np.nan)
    records = np.empty(len(frame), dtype=[(name, column.dtype) for name, column in columns.items()])
    for name, column in columns.items():
        records[name] = column
    return records


def _common_widths(*tables: np.ndarray) -> tuple[np.ndarray, ...]:
    """Train and test with the same field types (text fields as wide as the widest), so they concatenate."""
    fields = [(name, max((t.dtype[name] for t in tables), key=lambda d: d.itemsize)) for name in tables[0].dtype.names]
    return tuple(t.astype(fields) for t in tables)


def _listed(columns) -> str:
    names = [repr(str(c)) for c in columns]
    return ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
