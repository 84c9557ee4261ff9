"""The MLflow model a table's trial logs: its Keras model behind a pyfunc that takes rows as they come.

MLflow's Keras flavor feeds a DataFrame to the model as one `.values` array and Keras' predict takes no
NumPy text, so a model with one named input per column, text included, cannot be served by it. This file
is logged with the model (MLflow's "models from code", no pickle) and needs only MLflow, pandas and Keras
where it is served: `mlflow models serve` and `mlflow.pyfunc.load_model(...).predict(frame)` take a
DataFrame of the raw feature columns as pandas reads them from the table (integers, booleans, floats, codes
or text for a categorical column; extra columns, such as the label, are ignored) and return one probability
column per class name (a regressor, task regression: one column named after the label, in its units). A row the model cannot take is refused with one line naming the column.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import warnings
import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

KERAS_ARTIFACT = "keras_model"
# A file, not model_config: MLflow logs a model_config as params of the run, beside the hyperparameters.
CLASS_NAMES_ARTIFACT = "class_names"
FILLED_PREFIX = "filled_"  # the layers that fill a column's gaps inside the model (pipeline.model)


class RowsError(ValueError):
    """Rows the model cannot take; the message names the column(s) and what to send instead."""


class TableClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        import keras

        with _quiet_about_input_names():
            self.model = keras.saving.load_model(context.artifacts[KERAS_ARTIFACT], safe_mode=True, compile=False)
        with open(context.artifacts[CLASS_NAMES_ARTIFACT], encoding="utf-8") as names:
            self.class_names = list(json.load(names))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Probabilities (a regressor's predictions) per row; a bad row is a client's error (HTTP 400 from
        `mlflow models serve`)."""
        frame = pd.DataFrame(model_input)
        if frame.empty:  # Keras' predict fails on no rows
            return pd.DataFrame(np.zeros((len(frame), len(self.class_names))), columns=self.class_names,
                                index=frame.index)
        try:
            feed = table_feed(self.model, frame)
        except RowsError as exc:
            raise MlflowException(str(exc), INVALID_PARAMETER_VALUE) from None
        with _quiet_about_input_names():
            probabilities = self.model.predict(feed, verbose=0)
        return pd.DataFrame(probabilities, columns=self.class_names, index=frame.index)


def table_feed(model, frame: pd.DataFrame) -> dict:
    """A DataFrame's columns as the model's named inputs: text as strings, the rest as float32.

    Gaps (NaN, None, empty text) go to the model when it fills them itself (its study imputed them) and are
    refused otherwise; text in a numeric column, and numbers that are infinite or beyond float32, are refused.
    """
    import tensorflow as tf

    absent = [name for name in model.input if name not in frame.columns]
    if absent:
        raise RowsError(f"the rows lack the column(s) {', '.join(map(repr, absent))} the model takes")
    fills = any(layer.name.startswith(FILLED_PREFIX) for layer in model.layers)
    feed, problems = {}, []
    for name, tensor in model.input.items():
        column = frame[name]
        gaps = column.map(_is_gap).astype(bool)
        if gaps.any() and not fills:
            problems.append(f"{name!r} has {int(gaps.sum())} missing value(s); this model takes complete rows "
                            "(its study refused or dropped rows with gaps)")
        if tensor.dtype == "string":
            text = column.map(lambda v: "" if _is_gap(v) else category_text(v)).to_numpy(str)
            feed[name] = tf.constant(text.reshape(-1, 1))
            continue
        if _holds_times(column):
            problems.append(f"{name!r} holds dates or times, not numbers; send the numbers the table had")
            continue
        numbers = pd.to_numeric(column.where(~gaps), errors="coerce")
        unreadable = numbers.isna() & ~gaps
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused below
            values = numbers.to_numpy(dtype=np.float32, na_value=np.nan)
        if unreadable.any():
            problems.append(f"{name!r} has {int(unreadable.sum())} value(s) that are not numbers "
                            f"(e.g. {column[unreadable].iloc[0]!r})")
        elif np.isinf(values).any():
            problems.append(f"{name!r} has {int(np.isinf(values).sum())} value(s) that are infinite or beyond "
                            f"float32's range (e.g. {numbers[np.isinf(values)].iloc[0]:g}); send finite numbers")
        feed[name] = values.reshape(-1, 1)
    if problems:
        raise RowsError("column " + "; column ".join(problems))
    return feed


def category_text(value) -> str:
    """A categorical value as training wrote it (pipeline.data.tables.category_text): a code read as 1.0 because
    of a gap elsewhere in its column is the category 1."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _holds_times(column: pd.Series) -> bool:
    """Dates, times or spans, which pandas would turn into nanosecond counts: never what training read."""
    kinds = (datetime.date, datetime.time, datetime.timedelta, np.datetime64, np.timedelta64)
    if pd.api.types.is_datetime64_any_dtype(column) or pd.api.types.is_timedelta64_dtype(column):
        return True
    if isinstance(column.dtype, pd.PeriodDtype):
        return True
    # Only a column of Python objects can hold them mixed in; a numeric column is spared the per-value look.
    return column.dtype == object and bool(column.map(lambda v: isinstance(v, kinds)).any())


@contextlib.contextmanager
def _quiet_about_input_names():
    """Keras warns, per column, that an input's key differs from its tensor's name; they differ on purpose
    (a column named like a layer gets its own input name, pipeline.model), so a server's log stays clean."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="When providing `inputs` as a dict")
        yield


def _is_gap(value) -> bool:
    """None, NaN or empty text: what pandas reads from an empty cell, and JSON's null."""
    if isinstance(value, str):
        return value == ""
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


mlflow.models.set_model(TableClassifier())
