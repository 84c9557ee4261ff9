"""Writing runs: the study's parent run, one nested child per trial, export runs, and the model artifact.

Layout in the store: one experiment per sweep, one parent run per study (found again by its tags when
the study resumes), and one nested child run per trial with params, per-epoch curves, test metrics,
the model and the dataset it saw.
"""

from __future__ import annotations

import contextlib
import os
import time
import types
import warnings
from pathlib import Path
from typing import Iterator

import keras
import mlflow
import mlflow.keras
import numpy as np
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.models import infer_signature

from pipeline.errors import TrackingError
from pipeline.tracking.store import (CHAMPION, ERROR, MODEL_NAME, PLOTS, PREPROCESSING_FILE, ROLE, SOURCE_RUN,
                                     STATE, STORE_ERRORS, STUDY, TRIAL, Tracker, racing_write)

_RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


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
    racing_write(client.log_batch, run_id, tags=tags)
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
        with contextlib.suppress(*STORE_ERRORS):
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
    racing_write(client.log_batch, parent_id, metrics=metrics, tags=tags)


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
        racing_write(mlflow.log_input, dataset, context="training")

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
    except STORE_ERRORS as exc:
        raise TrackingError(f"cannot log to {tracker.tracking_uri}: {exc}") from exc
    try:
        yield recorder
        mlflow.set_tag(STATE, recorder.state)
        mlflow.end_run(_RUN_STATUS[recorder.state])
    except BaseException as exc:
        _end_failed(exc)
        if isinstance(exc, STORE_ERRORS):
            raise TrackingError(f"cannot log to {tracker.tracking_uri}: {exc}") from exc
        raise


def _end_failed(exc: BaseException) -> None:
    """Best effort: when the store itself is what failed, these calls fail too and must not hide why."""
    status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
    try:
        mlflow.set_tags({STATE: "FAIL", ERROR: f"{type(exc).__name__}: {exc}"[:4000]})
        mlflow.end_run(RunStatus.to_string(status))
    except STORE_ERRORS:
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


def numpy_dataset(features: np.ndarray, targets: np.ndarray, name: str, source: str, digest: str):
    """Describe the training data once per sweep; each trial links it as an input."""
    with warnings.catch_warnings():
        # MLflow registers two identical local-path source types and warns that it picked one.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        return mlflow.data.from_numpy(features, targets=targets, name=name, source=source, digest=digest)


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
