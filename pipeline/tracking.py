"""Experiment tracking: the only module that talks to MLflow.

Layout in the store: one experiment per sweep, one parent run per study (found again by its tags when
the study resumes), and one nested child run per trial with params, per-epoch curves, test metrics,
the model and the dataset it saw.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
import types
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import keras
import mlflow
import mlflow.keras
import numpy as np
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.models import infer_signature

from pipeline import stores
from pipeline.errors import TrackingError

ROLE, STUDY, TRIAL, STATE = "sweep.role", "sweep.study", "sweep.trial_number", "sweep.trial_state"
ERROR, SOURCE_RUN = "sweep.error", "sweep.source_run_id"
MODEL_NAME, PREPROCESSING_FILE, CHAMPION, PLOTS = "model", "preprocessing.json", "champion", "plots"
_RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
# What MLflow raises when the store itself fails: its own errors, and the HTTP client's for a server.
_STORE_ERRORS = (mlflow.exceptions.MlflowException, OSError)


@dataclass(frozen=True)
class Tracker:
    """A tracking URI and experiment, resolved once per sweep."""

    tracking_uri: str
    experiment_id: str


def connect(tracking_uri: str, experiment_name: str) -> Tracker:
    """Point MLflow at the store and make sure the experiment exists (artifacts beside a SQLite file).

    A server is asked for its health first, with a short timeout, so an unreachable one is refused before
    anything trains instead of after MLflow's minutes of retries.
    """
    uri = stores.resolve_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    mlflow.set_tracking_uri(uri)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        experiment = mlflow.get_experiment_by_name(experiment_name)
        if experiment is None:
            with contextlib.suppress(mlflow.exceptions.MlflowException):  # another worker created it first
                mlflow.create_experiment(experiment_name, artifact_location=stores.artifact_root(uri))
            experiment = mlflow.get_experiment_by_name(experiment_name)
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(f"{uri}: experiment '{experiment_name}' is deleted; restore it "
                                f"(mlflow experiments restore) or choose another tracking.experiment")
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot use the tracking store {uri}: {exc}") from None
    return Tracker(uri, experiment.experiment_id)


def open_parent_run(tracker: Tracker, study_name: str, sweep_file: Path, settings: dict) -> str:
    """Find the study's parent run (or start one), mark it running and attach the sweep file.

    Processes on several machines may start the same study at once and each create a parent; they all
    settle on the oldest one and delete their own duplicate.
    """
    client = mlflow.MlflowClient()
    parents = _parent_runs(tracker, study_name)
    if not parents:
        created = client.create_run(tracker.experiment_id, run_name=study_name,
                                    tags={ROLE: "parent", STUDY: study_name}).info.run_id
        parents = _parent_runs(tracker, study_name)
        if parents[0] != created:
            client.delete_run(created)
    run_id = parents[0]
    client.update_run(run_id, status="RUNNING")
    tags = [RunTag(f"sweep.{key}", str(value)) for key, value in settings.items()]
    _racing_write(client.log_batch, run_id, tags=tags)
    client.log_artifact(run_id, str(sweep_file), artifact_path="sweep")
    return run_id


def _parent_runs(tracker: Tracker, study_name: str) -> list[str]:
    found = mlflow.search_runs(
        [tracker.experiment_id], output_format="list", max_results=100,
        filter_string=f"tags.`{ROLE}` = 'parent' AND tags.`{STUDY}` = '{study_name}'")
    return [r.info.run_id for r in sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))]


@contextlib.contextmanager
def parent_run_closer(parent_id: str) -> Iterator[types.SimpleNamespace]:
    """End the parent run FINISHED, or KILLED when the sweep was interrupted or stopped by an error;
    leave it RUNNING when the sweep was handed over to a fresh process.

    Best effort on errors: when the store itself failed, closing fails too and must not hide why.
    """
    state = types.SimpleNamespace(interrupted=False, handed_over=False)
    try:
        yield state
    except BaseException:
        with contextlib.suppress(*_STORE_ERRORS):
            mlflow.MlflowClient().set_terminated(parent_id, status="KILLED")
        raise
    if not state.handed_over:
        mlflow.MlflowClient().set_terminated(parent_id, status="KILLED" if state.interrupted else "FINISHED")


def log_study_figures(parent_id: str, figures: dict) -> None:
    """The study-level plots on the parent run, replaced at the end of every `sweep run`."""
    client = mlflow.MlflowClient()
    for name, figure in figures.items():
        client.log_figure(parent_id, figure, f"{PLOTS}/{name}.png")


def record_best(parent_id: str, metric: str, trial_number: int, value: float, run_id: str | None) -> None:
    """Keep the parent run pointing at the best trial so far; the metric's steps trace the history."""
    client = mlflow.MlflowClient()
    tags = [RunTag("sweep.best_trial_number", str(trial_number)), RunTag("sweep.best_value", f"{value:.6f}")]
    tags += [RunTag("sweep.best_run_id", run_id)] if run_id else []
    metrics = [Metric(f"best_{metric}", value, int(time.time() * 1000), trial_number)]
    _racing_write(client.log_batch, parent_id, metrics=metrics, tags=tags)


class TrialRecorder:
    """Logging calls for the child run that is active while one trial trains."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.state = "COMPLETE"

    def log_epoch(self, epoch: int, logs: dict) -> bool:
        mlflow.log_metrics(logs, step=epoch)
        return False

    def log_results(self, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics)

    def log_dataset(self, dataset) -> None:
        _racing_write(mlflow.log_input, dataset, context="training")

    def log_figure(self, figure, name: str) -> None:
        mlflow.log_figure(figure, f"{PLOTS}/{name}.png")

    def log_report(self, report: dict) -> None:
        mlflow.log_dict(report, f"{PLOTS}/classification_report.json")

    def log_preprocessing(self, values: dict) -> None:
        """The fitted preprocessing statistics, so the model can be exported with them baked in."""
        mlflow.log_dict(values, PREPROCESSING_FILE)

    def log_model(self, model: keras.Model, example: np.ndarray, registered_name: str | None = None):
        """The network as an mlflow.keras model with signature and input example; optionally registered."""
        signature = infer_signature(example, keras.ops.convert_to_numpy(model(example, training=False)))
        return mlflow.models.Model.log(
            artifact_path=None, name=MODEL_NAME, flavor=_KERAS_FLAVOR, flavor_name="mlflow.keras", model=model,
            signature=signature, input_example=example, validate_serving_input=False,
            registered_model_name=registered_name,
            # Pinning the requirements skips MLflow's slow import-tracing of the whole process.
            pip_requirements=[f"keras=={keras.__version__}", f"tensorflow=={_tensorflow_version()}"])

    def register_champion(self, model: keras.Model, example: np.ndarray, name: str) -> int:
        """Log and register the model, and point the `champion` alias at the new version."""
        version = int(self.log_model(model, example, registered_name=name).registered_model_version)
        mlflow.MlflowClient().set_registered_model_alias(name, CHAMPION, str(version))
        return version


@contextlib.contextmanager
def trial_run(tracker: Tracker, parent_id: str, study_name: str, trial_number: int,
              params: dict) -> Iterator[TrialRecorder]:
    """A nested child run for one trial; its final status follows the recorder's state or the error."""
    tags = {ROLE: "trial", STUDY: study_name, TRIAL: str(trial_number)}
    with _run(tracker, f"trial-{trial_number:04d}", tags, params, parent_id) as recorder:
        yield recorder


@contextlib.contextmanager
def export_run(tracker: Tracker, study_name: str, trial_number: int, source_run_id: str, params: dict,
               refit: bool) -> Iterator[TrialRecorder]:
    """A top-level run recording an export (and, with refit, its retraining), linked to the trial's run."""
    tags = {ROLE: "export", STUDY: study_name, TRIAL: str(trial_number), SOURCE_RUN: source_run_id,
            "sweep.refit": str(refit).lower()}
    name = f"{'refit' if refit else 'export'}-trial-{trial_number:04d}"
    with _run(tracker, name, tags, params) as recorder:
        yield recorder


@contextlib.contextmanager
def _run(tracker: Tracker, name: str, tags: dict, params: dict, parent_id: str | None = None):
    """A run whose status always ends right: FINISHED, KILLED (pruned, Ctrl-C) or FAILED with the reason.

    MLflow's own failures (a server gone, a locked database) surface as TrackingError, so the runner
    can tell them from a trial that failed by itself.
    """
    try:
        run = mlflow.start_run(experiment_id=tracker.experiment_id, parent_run_id=parent_id, run_name=name,
                               tags={**tags, STATE: "RUNNING"})
        recorder = TrialRecorder(run.info.run_id)
        mlflow.log_params(params)
    except _STORE_ERRORS as exc:
        raise TrackingError(f"cannot log to {tracker.tracking_uri}: {exc}") from exc
    try:
        yield recorder
        mlflow.set_tag(STATE, recorder.state)
        mlflow.end_run(_RUN_STATUS[recorder.state])
    except BaseException as exc:
        _end_failed(exc)
        if isinstance(exc, _STORE_ERRORS):
            raise TrackingError(f"cannot log to {tracker.tracking_uri}: {exc}") from exc
        raise


def _end_failed(exc: BaseException) -> None:
    """Best effort: when the store itself is what failed, these calls fail too and must not hide why."""
    status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
    try:
        mlflow.set_tags({STATE: "FAIL", ERROR: f"{type(exc).__name__}: {exc}"[:4000]})
        mlflow.end_run(RunStatus.to_string(status))
    except _STORE_ERRORS:
        _forget_active_run()


def _forget_active_run() -> None:
    """Drop the fluent API's active run without contacting the store (which is unreachable)."""
    while mlflow.active_run() is not None:
        mlflow.tracking.fluent._active_run_stack.get().pop()


def fail_stale_run(run_id: str, reason: str) -> None:
    """End a run whose trial's process died (or lost the server), unless it already ended."""
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    if run.info.status == "RUNNING":
        client.set_tag(run_id, STATE, "FAIL")
        client.set_tag(run_id, ERROR, run.data.tags.get(ERROR, reason))
        client.set_terminated(run_id, status="FAILED")


def _racing_write(write, *args, attempts: int = 4, **kwargs):
    """Idempotent writes that concurrent workers may race on: MLflow upserts tags and registers datasets
    with a read-then-insert, so the loser of a race gets a unique-constraint error; trying again finds the
    row the winner wrote."""
    for attempt in range(attempts):
        try:
            return write(*args, **kwargs)
        except mlflow.exceptions.MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random() * 0.5)


def _check_server(uri: str) -> None:
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5)
    except OSError as exc:
        raise TrackingError(f"the MLflow tracking server {uri} is unreachable ({exc}); start it or pass "
                            "another --tracking-uri. Nothing was trained.") from None


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


def numpy_dataset(features: np.ndarray, targets: np.ndarray, name: str, source: str, digest: str):
    """Describe the training data once per sweep; each trial links it as an input."""
    with warnings.catch_warnings():
        # MLflow registers two identical local-path source types and warns that it picked one.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        return mlflow.data.from_numpy(features, targets=targets, name=name, source=source, digest=digest)


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


def _save_keras_model(path: str, validate_serving_input: bool = True, **kwargs) -> None:
    """mlflow.keras.save_model, creating the model folder first: given an input example, MLflow 3.x
    writes it before making the folder and fails (mlflow/mlflow#16183, open in 3.17).

    Serving-input validation (reloading the model to predict the example) is skipped: it doubles
    the logging time, and the tests load every logged model for real instead.
    """
    os.makedirs(path, exist_ok=True)
    mlflow.keras.save_model(path=path, **kwargs)


_KERAS_FLAVOR = types.SimpleNamespace(__name__="mlflow.keras", save_model=_save_keras_model)


def _tensorflow_version() -> str:
    import tensorflow as tf

    return tf.__version__
