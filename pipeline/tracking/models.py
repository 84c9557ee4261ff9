"""Keras models in MLflow: logged with a trial's run, registered as the champion, loaded back.

Kept apart from the rest of tracking because `mlflow.keras` imports TensorFlow: the commands that do not
train (`sweep run`'s supervisor, `report`, `ui`) never import this module.
"""

from __future__ import annotations

import json
import os
import tempfile
import types

import keras
import mlflow
import mlflow.keras
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import AnyType, ColSpec, DataType, Schema
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from pipeline import keys, stores
from pipeline.errors import TrackingError
from pipeline.tracking import array_pyfunc, table_pyfunc
from pipeline.tracking.store import existing_store
from pipeline.tracking.table_pyfunc import CLASS_NAMES_ARTIFACT, KERAS_ARTIFACT


def log_model(model: keras.Model, example: np.ndarray, class_names: tuple[str, ...],
              run_id: str | None = None) -> str:
    """The model as an MLflow model of run `run_id` (default: the active run), with signature, input example
    and class names.

    The signature is the raw input the model takes (e.g. uint8 28x28, or a table's columns) and the
    probabilities it returns (a regressor: one column named after the label), so `mlflow models serve` and
    pyfunc callers send what they have; the class names (the label's name), in the model's metadata, say what
    each output is. Returns the model's URI.
    """
    if example.dtype.names is not None:
        return _log_table_model(model, example, class_names, run_id)
    outputs = keras.ops.convert_to_numpy(model(example, training=False))
    signature = infer_signature(example, pd.DataFrame(outputs.astype(np.float64), columns=list(class_names))
                                if model.name == array_pyfunc.REGRESSOR else outputs)
    # Serving-input validation (reloading the model to predict the example) would double the logging time;
    # the tests load logged models for real instead.
    return _log_from_code(model, array_pyfunc, class_names, run_id, signature=signature, input_example=example,
                          validate_serving_input=False)


def _log_table_model(model: keras.Model, example: np.ndarray, class_names: tuple[str, ...],
                     run_id: str | None) -> str:
    """A table's model behind table_pyfunc, so that it is served DataFrame rows as they come.

    The signature names the columns but gives them no type: pandas reads a column of whole numbers as
    int64, a boolean one as bool, codes as numbers or text, and a gap turns any of them into floats or
    objects; MLflow would refuse all of these against a double or string type, and table_pyfunc converts
    each column itself, refusing what it cannot take by name."""
    frame = _example_rows(example)
    signature = ModelSignature(Schema([ColSpec(AnyType(), name) for name in example.dtype.names]),
                               Schema([ColSpec(DataType.double, name) for name in class_names]))
    return _log_from_code(model, table_pyfunc, class_names, run_id, signature=signature, input_example=frame)


def _log_from_code(model: keras.Model, code: types.ModuleType, class_names: tuple[str, ...], run_id: str | None,
                   **logged) -> str:
    """The Keras model, saved with safe_mode's format, behind the pyfunc in `code` (MLflow's "model from
    code": its file is copied beside the model; no pickle). What mlflow.pyfunc.log_model does, through
    Model.log, which takes a run id."""
    with tempfile.TemporaryDirectory(prefix="sweep-model-") as folder:
        path, names = os.path.join(folder, "model.keras"), os.path.join(folder, "class_names.json")
        model.save(path)
        with open(names, "w", encoding="utf-8") as handle:
            json.dump(list(class_names), handle)
        info = mlflow.models.Model.log(
            artifact_path=None, name=keys.MODEL, flavor=_PYFUNC_FLAVOR, run_id=run_id, python_model=code.__file__,
            artifacts={KERAS_ARTIFACT: path, CLASS_NAMES_ARTIFACT: names},
            metadata={keys.CLASS_NAMES: list(class_names)},
            pip_requirements=[*_requirements(), f"pandas=={pd.__version__}"], **logged)
    return info.model_uri


def _example_rows(example: np.ndarray) -> pd.DataFrame:
    """Rows as a user has them: numbers as written (13.2, not float32's 13.199999809), gaps as nulls."""
    columns = {}
    for name in example.dtype.names:
        values = example[name]
        gaps = values == "" if values.dtype.kind == "U" else np.isnan(values)
        written = values.tolist() if values.dtype.kind == "U" else [float(str(v)) for v in values]
        columns[name] = [None if gap else value for gap, value in zip(gaps, written)]
    return pd.DataFrame(columns)


def register_champion(model_uri: str, name: str, description: str) -> int:
    """Register an already logged model under `name` and point the `champion` alias at the new version.

    Registered from the LoggedModel itself (models:/m-...) through the client: mlflow.register_model, given a
    run's URI, looks for model files in the run (MLflow 3 keeps them with the LoggedModel), warns that it found
    none, and prints each step besides; the export's summary says what was registered."""
    client = mlflow.MlflowClient()
    model = _logged_model(client, model_uri)
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    version = client.create_model_version(name, f"models:/{model.model_id}", run_id=model.source_run_id,
                                          description=description, model_id=model.model_id)
    # The link back from the LoggedModel that mlflow.register_model records: the UI lists its versions from it.
    links = json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS, "[]")) + [{"name": name, "version": version.version}]
    client.set_logged_model_tags(model.model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(links)})
    client.set_registered_model_alias(name, keys.CHAMPION, str(version.version))
    return int(version.version)


def _logged_model(client: mlflow.MlflowClient, model_uri: str):
    """The LoggedModel behind models:/m-... or runs:/RUN/model (the model that run logged under that name)."""
    if not model_uri.startswith("runs:/"):
        return client.get_logged_model(model_uri.removeprefix("models:/"))
    run_id, _, name = model_uri.removeprefix("runs:/").partition("/")
    run = client.get_run(run_id)
    found = client.search_logged_models([run.info.experiment_id],
                                        filter_string=f"source_run_id = '{run_id}' AND name = '{name}'")
    if len(found) != 1:
        raise TrackingError(f"{model_uri}: run {run_id} logged {len(found)} models named '{name}', not one; "
                            "export another trial or pass --refit")
    return found[0]


def class_names(uri: str) -> tuple[str, ...] | None:
    """The class names a logged model carries in its metadata (None for models logged before they did)."""
    try:
        names = (mlflow.models.get_model_info(uri).metadata or {}).get(keys.CLASS_NAMES)
    except Exception as exc:  # MLflow raises many types for a missing model
        raise TrackingError(f"cannot read {uri} from {stores.printable(mlflow.get_tracking_uri())}: {exc}") from None
    return tuple(names) if names else None


def trial_model_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{keys.MODEL}"


def load_model(uri: str, tracking_uri: str | None = None) -> keras.Model:
    """A model from the registry (models:/NAME@alias) or a run (runs:/ID/model).

    The artifacts are downloaded into a temporary folder that is removed again (MLflow's own loader
    leaves a copy of every model it loads under /tmp).
    """
    if tracking_uri:
        mlflow.set_tracking_uri(existing_store(tracking_uri))
    try:
        with tempfile.TemporaryDirectory(prefix="sweep-model-") as folder:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder)
            return _load_local(local)
    except Exception as exc:  # MLflow and Keras raise many types for a missing or damaged model
        raise TrackingError(f"cannot load {uri} from {stores.printable(mlflow.get_tracking_uri())}: "
                            f"{type(exc).__name__}: {exc}") from None


def _load_local(folder: str) -> keras.Model:
    """The Keras model of a downloaded MLflow model: the one its pyfunc holds, or the keras flavor's (models
    logged before images had their own pyfunc)."""
    flavors = mlflow.models.Model.load(folder).flavors
    if "keras" in flavors:
        return mlflow.keras.load_model(folder)
    artifact = flavors["python_function"]["artifacts"][KERAS_ARTIFACT]["path"]
    return keras.saving.load_model(os.path.join(folder, artifact), safe_mode=True)


def _requirements() -> list[str]:
    """Pinning the requirements skips MLflow's slow import-tracing of the whole process."""
    return [f"keras=={keras.__version__}", f"tensorflow=={_tensorflow_version()}"]


def _save_pyfunc_model(path: str, validate_serving_input: bool = True, **kwargs) -> None:
    """mlflow.pyfunc.save_model, which does not take the switch Model.log reads to skip its serving-input
    validation (reloading the model to predict the example)."""
    mlflow.pyfunc.save_model(path=path, **kwargs)


_PYFUNC_FLAVOR = types.SimpleNamespace(__name__="mlflow.pyfunc", save_model=_save_pyfunc_model)


def _tensorflow_version() -> str:
    import tensorflow as tf

    return tf.__version__
