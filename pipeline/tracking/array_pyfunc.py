"""The MLflow model an image or array trial logs: its Keras model behind a pyfunc that predicts quietly.

MLflow's Keras flavor calls the model's predict with Keras' default verbosity, which prints a progress bar
for every prediction into a server's log or a notebook. This file is logged with the model (MLflow's "models
from code", no pickle) and needs only MLflow and Keras where it is served: `mlflow models serve` and
`mlflow.pyfunc.load_model(...).predict(x)` take the raw inputs the signature names (uint8 28x28 images,
say) and return the class probabilities, an array with one column per class name; a regressor's (task
regression) numbers in the label's units, a DataFrame with one column named after the label.
"""

from __future__ import annotations

import json
import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

KERAS_ARTIFACT = "keras_model"
# A file, not model_config: MLflow logs a model_config as params of the run, beside the hyperparameters.
CLASS_NAMES_ARTIFACT = "class_names"
REGRESSOR = "regressor"  # the Keras model's name when it predicts numbers (pipeline.tasks.regression.MODEL_NAME)


class ArrayClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        import keras

        self.model = keras.saving.load_model(context.artifacts[KERAS_ARTIFACT], safe_mode=True, compile=False)
        with open(context.artifacts[CLASS_NAMES_ARTIFACT], encoding="utf-8") as names:
            self.class_names = list(json.load(names))

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray | pd.DataFrame:
        """The class probabilities (or a regressor's predictions), one row per input (MLflow has made the input
        an array of the signature's shape and type)."""
        inputs = np.asarray(model_input)
        if not len(inputs):  # Keras' predict fails on no inputs
            return self._answer(np.zeros((0, len(self.class_names)), np.float32))
        if inputs.dtype.kind == "f":  # NaN probabilities would be answered as a bare NaN, which is not JSON
            unusable = int(np.count_nonzero(~np.isfinite(inputs)))
            if unusable:
                raise MlflowException(f"{unusable} input value(s) are NaN, infinite or beyond float32's range; the "
                                      "model takes finite numbers", INVALID_PARAMETER_VALUE)
        outputs = self.model.predict(inputs, verbose=0)
        broken = int(np.count_nonzero(~np.isfinite(outputs).all(axis=1)))
        if broken:  # finite inputs so far outside training that the model overflows
            what = "predictions" if self.model.name == REGRESSOR else "probabilities"
            raise MlflowException(f"the model's {what} for {broken} input(s) are NaN: their values lie far "
                                  "outside what it was trained on", INVALID_PARAMETER_VALUE)
        return self._answer(outputs)

    def _answer(self, outputs: np.ndarray) -> np.ndarray | pd.DataFrame:
        """Probabilities as the array they are; a regressor's numbers as a column named after the label."""
        return pd.DataFrame(outputs, columns=self.class_names) if self.model.name == REGRESSOR else outputs


mlflow.models.set_model(ArrayClassifier())
