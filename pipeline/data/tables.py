"""Tables, CSV or Parquet (read with pandas): a label column, numeric feature columns and categorical ones.

The rows become a NumPy structured array with one field per feature column (float32 for numbers, text for
the categorical columns), so the split, the digests and the memory check treat a table like any other
input, and the model gets one named input per column: it takes rows as they come, strings included.

Missing values are refused by default, naming each column and how many rows. `data.missing: drop` drops
those rows (train and test alike); `impute` fills numbers with the training split's mean and categories
with its most frequent value, fitted after the split so that neither validation nor test leaks in: the
model does the filling itself (preprocessing.filled_gaps), so that rows served with gaps are filled alike.
Rows without a label are dropped with `drop` or `impute`: a label cannot be imputed. Infinite numbers, and
numbers beyond float32, are refused whatever `data.missing` says.

With `task: regression` the label column holds the numbers to predict (float64; its name is the one output's
name): text, infinite or (with data.missing: refuse) missing labels are refused naming the rows, and the test
rows are a seeded shuffle's share instead of a stratified one.
"""

from __future__ import annotations

import filecmp
import functools
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import DataConfig
from pipeline.data.records import RawData, checked, continuous_hint
from pipeline.data.split import stratified_split
from pipeline.errors import DataError
from pipeline.preprocessing import MISSING_TEXT

READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}


def load_table(path: Path, data: DataConfig, seed: int) -> RawData:
    """The table's features and labels; the test rows from data.test_file, else a seeded split (stratified by
    class unless the task is regression)."""
    train = _prepared(read_table(path), path, data)
    test_path = _test_path(path, data.test_file)
    test = _prepared(read_table(test_path), test_path, data) if test_path else None
    features = _feature_columns(train, path, data)
    regression = data.task == "regression"
    if regression:
        class_names, codes = (data.label,), None
    else:
        _check_label(train[data.label], path, data.label)
        class_names = _class_names(train[data.label], test[data.label] if test is not None else None)
        codes = {name: index for index, name in enumerate(class_names)}
    labels = functools.partial(_label_values, label=data.label, codes=codes)
    x, y = _records(train, features, data.categorical, path), labels(train[data.label], path)
    if test is None:
        x, x_test, y, y_test = stratified_split(x, y, data.test_fraction, seed, str(path), "data.test_fraction",
                                                by_class=not regression)
    else:
        _check_same_columns(test, features, test_path)
        _feature_columns(test[[*features, data.label]], test_path, data)
        x_test, y_test = _records(test, features, data.categorical, test_path), labels(test[data.label], test_path)
        x, x_test = _common_widths(x, x_test)
    return checked(RawData(x, y, x_test, y_test, source=str(path.resolve()), class_names=class_names,
                           task=data.task))


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame; an empty one, or one naming a column twice, is refused."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: a table must be a CSV or Parquet file ({', '.join(READERS)})")
    if not path.is_file():
        raise DataError(f"{path}: no such table")
    try:
        frame = reader(path)
        # pandas renames a CSV's second `a` to `a.1`; the header as written shows the duplicate
        header = (pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
                  if reader is pd.read_csv else [str(c) for c in frame.columns])
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot read it as a {path.suffix.lower()[1:].upper()} table "
                        f"({type(exc).__name__}: {exc})") from None
    twice = [name for name, count in Counter(header).items() if count > 1]
    if twice:
        raise DataError(f"{path}: the column {twice[0]!r} appears {Counter(header)[twice[0]]} times in the "
                        "header; give each column its own name, or remove the copies")
    if frame.empty:
        raise DataError(f"{path}: the table holds no rows")
    return frame


def category_text(value) -> str:
    """A categorical value as text: integer-valued numbers without a fraction (a column of codes read as
    floats because of a gap, 1.0, is the same category as 1), the rest as str() writes them. The served
    model's table_pyfunc.category_text is its copy: that file runs where pipeline may not be installed."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _test_path(path: Path, test_file: str | None) -> Path | None:
    """The test table: an absolute path, or one relative to the training table's folder (so `--data-dir`
    pointing at another folder finds its own test file). The training table itself is refused."""
    if test_file is None:
        return None
    test = Path(test_file).expanduser()
    test = test if test.is_absolute() else path.parent / test
    if test.is_file() and path.is_file() and (test.samefile(path) or filecmp.cmp(test, path, shallow=False)):
        what = "itself" if test.samefile(path) else "byte for byte (a copy)"
        raise DataError(f"{test}: data.test_file is the training table {path} {what}; the test rows must be "
                        "rows training never saw: name another file, or set data.test_file to null to keep "
                        "data.test_fraction of the table apart")
    return test


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
        if name not in data.categorical and not _is_numeric(frame[name]):
            text = frame[name][pd.to_numeric(frame[name], errors="coerce").isna() & frame[name].notna()]
            example = next(iter(text), next(iter(frame[name].dropna()), None))
            raise DataError(f"{path}: column {name!r} is not numeric (e.g. {example!r}); list it in "
                            "data.categorical to one-hot encode it, or remove it from the table")
    return features


def _is_numeric(column: pd.Series) -> bool:
    """Numbers or booleans; a boolean column with gaps is read as objects, True, False and NaN."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return True
    present = column.dropna()
    return len(present) > 0 and all(isinstance(v, (bool, np.bool_)) for v in present)


def _check_same_columns(test: pd.DataFrame, features: list[str], path: Path) -> None:
    absent = [c for c in features if c not in test.columns]
    if absent:
        raise DataError(f"{path}: the test table lacks the feature column(s) {', '.join(map(repr, absent))}")


def _check_label(column: pd.Series, path: Path, label: str) -> None:
    """A classifier's label: a numeric one with many distinct values, fractional or mostly one row each, is a
    measurement (records.continuous_hint): refused, naming `task: regression`, since most of its classes
    would be too small to split and learn anyway."""
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return
    hint = continuous_hint(column.to_numpy(dtype=np.float64))
    if hint:
        raise DataError(f"{path}: the label column {label!r}: {hint}; or choose a label column of classes, "
                        "or bin this one")


def _label_values(column: pd.Series, path: Path, label: str, codes: dict[str, int] | None) -> np.ndarray:
    """Class codes by the class names' `codes`, or (None: a regression) the numbers."""
    return _labels(column, codes) if codes is not None else _numbers(column, path, label)


def _numbers(column: pd.Series, path: Path, label: str) -> np.ndarray:
    """A regression's label column as float64; text and infinite values refused, naming the rows (counted
    from 0, the first row under the header). Missing labels never get here: _prepared refused or dropped them."""
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    for bad, what in ((np.isnan(numbers), "text, not numbers"), (np.isinf(numbers), "infinite")):
        if bad.any():
            rows = column.index[bad]
            shown = ", ".join(str(r) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
            raise DataError(f"{path}: the label column {label!r} is {what} in {len(rows)} row(s) ({shown}, e.g. "
                            f"{column[rows[0]]!r}); task regression needs a finite number in every row")
    return numbers


def _class_names(train: pd.Series, test: pd.Series | None) -> tuple[str, ...]:
    """The label values, sorted (numbers numerically), as text; 1.0 in one file is 1 in the other."""
    values = pd.concat([train, test]) if test is not None else train
    by_text = {category_text(v): v for v in values.unique()}
    return tuple(sorted(by_text, key=lambda text: (isinstance(by_text[text], str), by_text[text])))


def _labels(column: pd.Series, codes: dict[str, int]) -> np.ndarray:
    return np.array([codes[category_text(v)] for v in column], dtype=np.int64)


def _records(frame: pd.DataFrame, features: list[str], categorical: tuple[str, ...], path: Path) -> np.ndarray:
    """The feature columns as one structured array: float32 numbers (NaN where missing), categorical text;
    infinite numbers and numbers beyond float32 refused, naming each column and how many rows."""
    columns, infinite = {}, {}
    for name in features:
        if name in categorical:
            columns[name] = frame[name].map(lambda v: MISSING_TEXT if pd.isna(v) else category_text(v)).to_numpy(
                dtype=str)
        else:
            with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused just below
                columns[name] = frame[name].to_numpy(dtype=np.float32, na_value=np.nan)
            if np.isinf(columns[name]).any():
                infinite[name] = int(np.isinf(columns[name]).sum())
    if infinite:
        found = ", ".join(f"{name!r} ({count} rows)" for name, count in infinite.items())
        raise DataError(f"{path}: infinite numbers, or numbers beyond float32 (about 3.4e38), in {found}; a "
                        "model cannot learn from them: fix or remove those rows")
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
