"""The MLflow model a table's trial logs: its Keras model behind a pyfunc that takes rows as they come.

MLflow's Keras flavor feeds a DataFrame to the model as one `.values` array and Keras' predict takes no
NumPy text, so a model with one named input per column, text included, cannot be served by it. This file
is logged with the model (MLflow's "models from code", no pickle) and needs only MLflow, pandas and Keras
where it is served: `mlflow models serve` and `mlflow.pyfunc.load_model(...).predict(frame)` take a
DataFrame of the raw feature columns (extra columns, such as the label, are ignored) and return one
probability column per class name.
"""

from __future__ import annotations

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd

KERAS_ARTIFACT = "keras_model"


class TableClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        import keras

        self.model = keras.saving.load_model(context.artifacts[KERAS_ARTIFACT], safe_mode=True, compile=False)
        self.class_names = list(context.model_config["class_names"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        probabilities = self.model.predict(table_feed(self.model, frame), verbose=0)
        return pd.DataFrame(probabilities, columns=self.class_names, index=frame.index)


def table_feed(model, frame: pd.DataFrame) -> dict:
    """A DataFrame's columns as the model's named inputs: text as strings, the rest as float32."""
    import tensorflow as tf

    absent = [name for name in model.input if name not in frame.columns]
    if absent:
        raise ValueError(f"the rows lack the column(s) {', '.join(map(repr, absent))} the model takes")
    feed = {}
    for name, tensor in model.input.items():
        column = frame[name]
        if tensor.dtype == "string":
            feed[name] = tf.constant(column.map(lambda v: "" if pd.isna(v) else str(v)).to_numpy(str).reshape(-1, 1))
        else:
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
            unreadable = int(np.isnan(values).sum())
            if unreadable:
                raise ValueError(f"column {name!r} has {unreadable} missing or non-numeric value(s); the model "
                                 "takes complete rows of numbers")
            feed[name] = values.reshape(-1, 1)
    return feed


mlflow.models.set_model(TableClassifier())
