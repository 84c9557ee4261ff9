"""Reading back: logged models and preprocessing, metrics, a study's trial runs, and where to see them."""

from __future__ import annotations

import keras
import mlflow
import mlflow.keras

from pipeline import stores
from pipeline.errors import TrackingError
from pipeline.tracking.store import MODEL_NAME, PREPROCESSING_FILE, ROLE, STUDY, TRIAL


def load_trial_model(run_id: str) -> keras.Model:
    """The trained network a trial logged, or TrackingError naming the run when it is gone or damaged."""
    return load_model_uri(f"runs:/{run_id}/{MODEL_NAME}")


def load_model_uri(uri: str, tracking_uri: str | None = None) -> keras.Model:
    """A model from the registry (models:/NAME@alias) or a run (runs:/ID/model)."""
    if tracking_uri:
        mlflow.set_tracking_uri(stores.resolve_uri(tracking_uri, create=False))
    try:
        return mlflow.keras.load_model(uri)
    except Exception as exc:  # MLflow and Keras raise many types for a missing or damaged model
        raise TrackingError(f"cannot load {uri} from {mlflow.get_tracking_uri()}: "
                            f"{type(exc).__name__}: {exc}") from None


def load_trial_preprocessing(run_id: str) -> dict:
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{PREPROCESSING_FILE}")
    except Exception as exc:
        raise TrackingError(f"cannot read {PREPROCESSING_FILE} of run {run_id}: {exc}") from None


def logged_metric(run_id: str, name: str) -> float:
    return mlflow.MlflowClient().get_run(run_id).data.metrics[name]


def trial_runs_frame(tracking_uri: str, experiment_name: str, study_name: str):
    """One row per trial run of a study (run id, status, final metrics, duration), read from MLflow."""
    import pandas as pd

    client = mlflow.MlflowClient(stores.resolve_uri(tracking_uri, create=False))
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return pd.DataFrame(columns=["trial", "run_id", "run_status", "duration_s"])
    runs = client.search_runs([experiment.experiment_id], max_results=50000,
                              filter_string=f"tags.`{ROLE}` = 'trial' AND tags.`{STUDY}` = '{study_name}'")
    return pd.DataFrame([{
        "trial": int(r.data.tags[TRIAL]), "run_id": r.info.run_id, "run_status": r.info.status,
        "duration_s": ((r.info.end_time or r.info.start_time) - r.info.start_time) / 1000,
        **{name: r.data.metrics.get(name) for name in ("epochs_run", "val_accuracy", "test_accuracy")},
    } for r in runs], columns=["trial", "run_id", "run_status", "duration_s", "epochs_run", "val_accuracy",
                               "test_accuracy"])


def experiment_url(tracking_uri: str, experiment_name: str, base_url: str) -> str | None:
    experiment = mlflow.MlflowClient(stores.resolve_uri(tracking_uri, create=False)).get_experiment_by_name(
        experiment_name)
    return None if experiment is None else f"{base_url}/#/experiments/{experiment.experiment_id}"


def ui_command(tracking_uri: str) -> str:
    """The command that opens this store in the MLflow UI (a server store is opened in a browser)."""
    if stores.is_sqlite(tracking_uri):
        return f"mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000"
    return f"open {tracking_uri} in a browser"
