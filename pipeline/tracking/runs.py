"""Writing runs: the study's parent run, one nested child per trial, and export runs.

Layout in the store: one experiment per sweep, one parent run per study (found again by its tags when
the study resumes), and one nested child run per trial with params, per-epoch curves, test metrics,
the model and the dataset it saw. Models themselves are logged by tracking.models.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Iterator

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline import keys, stores
from pipeline.errors import TrackingError
from pipeline.processes import pid_alive
from pipeline.tracking.store import STORE_ERRORS, Tracker, racing_write

_RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


def open_parent_run(tracker: Tracker, study_name: str, storage: str, sweep_file: Path, settings: dict,
                    known: str | None = None) -> str:
    """Find the study's parent run (or start one), mark it running and attach the sweep file.

    `known` is the parent the study recorded (or its trials' runs name): it is the study's parent wherever
    the store now lies, so a copied or moved store keeps its one parent. Otherwise a study is its name in its
    storage: two studies of one name in different storages never share a parent. Processes on several
    machines may start the same study at once and each create a parent; they all settle on the oldest one
    and delete their own duplicate.
    """
    client = mlflow.MlflowClient()
    run_id = _live_run(client, tracker, known) or _found_or_created_parent(client, tracker, study_name, storage)
    client.update_run(run_id, status="RUNNING")
    tags = [RunTag(f"{keys.SETTING_PREFIX}{key}", str(value)) for key, value in settings.items()]
    tags.append(RunTag(keys.STORAGE, storage))  # where the study is now, should it have moved
    racing_write(client.log_batch, run_id, tags=tags)
    if sweep_file.is_file():  # not for `--study NAME`, whose sweep file is the copy the study stores
        client.log_artifact(run_id, str(sweep_file), artifact_path=keys.SWEEP_DIR)
    return run_id


def _live_run(client: mlflow.MlflowClient, tracker: Tracker, run_id: str | None) -> str | None:
    """The run if it is still there, in this experiment and not deleted."""
    if not run_id:
        return None
    try:
        info = client.get_run(run_id).info
    except mlflow.exceptions.MlflowException:
        return None
    return run_id if info.experiment_id == tracker.experiment_id and info.lifecycle_stage == "active" else None


def _found_or_created_parent(client: mlflow.MlflowClient, tracker: Tracker, study_name: str, storage: str) -> str:
    parents = _parent_runs(tracker, study_name, storage)
    if not parents:
        tags = {keys.ROLE: "parent", keys.STUDY: study_name, keys.STORAGE: storage}
        created = client.create_run(tracker.experiment_id, run_name=study_name, tags=tags).info.run_id
        parents = _parent_runs(tracker, study_name, storage)
        if parents[0] != created:
            client.delete_run(created)
    return parents[0]


def parent_of(run_ids: list[str]) -> str | None:
    """The parent run of the first of these trial runs the store still holds (studies that did not record
    their parent run yet)."""
    client = mlflow.MlflowClient()
    for run_id in run_ids:
        try:
            return client.get_run(run_id).data.tags.get(MLFLOW_PARENT_RUN_ID)
        except mlflow.exceptions.MlflowException:
            continue
    return None


def _parent_runs(tracker: Tracker, study_name: str, storage: str) -> list[str]:
    found = mlflow.search_runs(
        [tracker.experiment_id], output_format="list", max_results=100,
        filter_string=f"tags.`{keys.ROLE}` = 'parent' AND tags.`{keys.STUDY}` = {filter_literal(study_name)} "
                      f"AND tags.`{keys.STORAGE}` = {filter_literal(storage)}")
    return [r.info.run_id for r in sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))]


def filter_literal(text: str) -> str:
    """A string in MLflow's filter syntax: single-quoted, or double-quoted when it holds a single quote
    (MLflow's parser has no escapes)."""
    return f'"{text}"' if "'" in text else f"'{text}'"


def close_parent_run(parent_id: str, status: str) -> None:
    """FINISHED when the sweep ended normally, KILLED when it was interrupted or stopped by an error.

    Best effort: when the store itself is what failed, closing fails too and must not hide why.
    """
    with contextlib.suppress(*STORE_ERRORS):
        _terminate(mlflow.MlflowClient(), parent_id, status)


def log_study_figures(parent_id: str, figures: dict) -> None:
    """The study-level plots on the parent run, replaced at the end of every `sweep run`."""
    client = mlflow.MlflowClient()
    for name, figure in figures.items():
        client.log_figure(parent_id, figure, f"{keys.PLOTS}/{name}.png")


def log_parent_file(parent_id: str, path: Path, folder: str) -> None:
    """A file as it is (a user's builder source) under `folder` of the parent run's artifacts."""
    mlflow.MlflowClient().log_artifact(parent_id, str(path), artifact_path=folder)


def log_parent_text(parent_id: str, text: str, path: str) -> None:
    """A text artifact on the parent run (the confirmation table, the verdict), replaced when rewritten."""
    mlflow.MlflowClient().log_text(parent_id, text, path)


def record_best(parent_id: str, metric: str, trial_number: int, value: float, run_id: str | None) -> None:
    """Keep the parent run pointing at the best trial so far; the metric's steps trace the history."""
    client = mlflow.MlflowClient()
    tags = [RunTag(keys.BEST_TRIAL, str(trial_number)), RunTag(keys.BEST_VALUE, f"{value:.6f}")]
    tags += [RunTag(keys.BEST_RUN, run_id)] if run_id else []
    metrics = [Metric(f"best_{metric}", value, int(time.time() * 1000), trial_number)]
    racing_write(client.log_batch, parent_id, metrics=metrics, tags=tags)


class RunRecorder:
    """Logging calls for the run that is active while one trial (or an export) trains."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.state = "COMPLETE"

    def log_epoch(self, epoch: int, logs: dict) -> bool:
        mlflow.log_metrics(logs, step=epoch)
        return False

    def log_results(self, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics)

    def tag(self, key: str, value: str) -> None:
        mlflow.set_tag(key, value)

    def log_dataset(self, dataset) -> None:
        racing_write(mlflow.log_input, dataset, context="training")

    def log_figure(self, figure, name: str) -> None:
        """By run id, not the active run: plots are logged from a background thread after the run ended."""
        mlflow.MlflowClient().log_figure(self.run_id, figure, f"{keys.PLOTS}/{name}.png")

    def log_report(self, report: dict, name: str) -> None:
        mlflow.MlflowClient().log_dict(self.run_id, report, f"{keys.PLOTS}/{name}.json")

    def log_file(self, path: Path, folder: str) -> None:
        """A file as it is (a user's builder source) under `folder` of the run's artifacts."""
        mlflow.MlflowClient().log_artifact(self.run_id, str(path), artifact_path=folder)


@contextlib.contextmanager
def trial_run(tracker: Tracker, parent_id: str, study_name: str, storage: str, trial_number: int,
              params: dict) -> Iterator[RunRecorder]:
    """A nested child run for one trial; its final status follows the recorder's state or the error."""
    tags = {keys.ROLE: "trial", keys.STUDY: study_name, keys.STORAGE: storage, keys.TRIAL: str(trial_number)}
    with _run(tracker, f"trial-{trial_number:04d}", tags, params, parent_id) as recorder:
        yield recorder


@contextlib.contextmanager
def retraining_run(tracker: Tracker, parent_id: str, study_name: str, storage: str, attrs: dict,
                   params: dict) -> Iterator[RunRecorder]:
    """A nested child run for one of a confirmation's retrainings, linked to the trial it repeats."""
    trial = attrs[keys.SOURCE_TRIAL]
    tags = {keys.ROLE: "confirmation", keys.STUDY: study_name, keys.STORAGE: storage, keys.TRIAL: str(trial),
            keys.REPEAT_TAG: str(attrs[keys.REPEAT]), keys.SEED_TAG: str(attrs[keys.SEED]),
            keys.SOURCE_RUN: attrs[keys.SOURCE_RUN_ID]}
    with _run(tracker, f"trial-{trial:04d}-seed-{attrs[keys.REPEAT] + 1}", tags, params, parent_id) as recorder:
        yield recorder


@contextlib.contextmanager
def export_run(tracker: Tracker, study_name: str, storage: str, trial_number: int, source_run_id: str,
               params: dict, refit: bool) -> Iterator[RunRecorder]:
    """A top-level run recording an export (and, with refit, its retraining), linked to the trial's run.

    It names the process writing it, so that a later export can end it if that process was killed."""
    tags = {keys.ROLE: "export", keys.STUDY: study_name, keys.STORAGE: storage, keys.TRIAL: str(trial_number),
            keys.SOURCE_RUN: source_run_id, keys.REFIT: str(refit).lower(),
            keys.RUN_HOST: socket.gethostname(), keys.RUN_PID: str(os.getpid())}
    name = f"{'refit' if refit else 'export'}-trial-{trial_number:04d}"
    with _run(tracker, name, tags, params) as recorder:
        yield recorder


@contextlib.contextmanager
def _run(tracker: Tracker, name: str, tags: dict, params: dict, parent_id: str | None = None):
    """A run whose status always ends right: FINISHED, KILLED (pruned, Ctrl-C) or FAILED with the reason.

    MLflow's own failures (a server gone, a locked database) surface as TrackingError, so the worker
    can tell them from a trial that failed by itself.
    """
    try:
        run = mlflow.start_run(experiment_id=tracker.experiment_id, parent_run_id=parent_id, run_name=name,
                               tags={**tags, keys.STATE: "RUNNING"})
    except STORE_ERRORS as exc:
        raise TrackingError(f"cannot log to {stores.printable(tracker.tracking_uri)}: {exc}") from exc
    recorder = RunRecorder(run.info.run_id)
    try:  # from here the run is MLflow's active run: whatever fails ends it, or every later start_run would fail
        mlflow.log_params(params)
        yield recorder
        mlflow.set_tag(keys.STATE, recorder.state)
        _end_active_run(_RUN_STATUS[recorder.state])
    except BaseException as exc:
        _end_failed(exc)
        if isinstance(exc, STORE_ERRORS):
            raise TrackingError(f"cannot log to {stores.printable(tracker.tracking_uri)}: {exc}") from exc
        raise


def _end_failed(exc: BaseException) -> None:
    """Best effort: when the store itself is what failed, these calls fail too and must not hide why."""
    status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
    try:
        mlflow.set_tags({keys.STATE: "FAIL", keys.RUN_ERROR: f"{type(exc).__name__}: {exc}"[:4000]})
        _end_active_run(RunStatus.to_string(status))
    except STORE_ERRORS:
        _forget_active_run()


def _end_active_run(status: str) -> None:
    """mlflow.end_run without the "View run ... at: URL" lines MLflow writes to stdout when a run on a
    tracking server ends: they fell between the trial lines. MLflow's only switch for them is an environment
    variable (MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT), and this process keeps no state there."""
    with contextlib.redirect_stdout(io.StringIO()):
        mlflow.end_run(status)


def _terminate(client: mlflow.MlflowClient, run_id: str, status: str) -> None:
    """client.set_terminated, without the run's URL on stdout (see _end_active_run)."""
    with contextlib.redirect_stdout(io.StringIO()):
        client.set_terminated(run_id, status=status)


def _forget_active_run() -> None:
    """Drop the fluent API's active run without contacting the store (which is unreachable)."""
    while mlflow.active_run() is not None:
        mlflow.tracking.fluent._active_run_stack.get().pop()


def end_dead_export_runs(tracker: Tracker, study_name: str) -> list[str]:
    """Export runs of this study left RUNNING by a process that is gone (killed mid-export): ended KILLED."""
    running = mlflow.search_runs(
        [tracker.experiment_id], output_format="list", max_results=1000,
        filter_string=f"tags.`{keys.ROLE}` = 'export' AND tags.`{keys.STUDY}` = {filter_literal(study_name)} "
                      "AND attributes.status = 'RUNNING'")
    ended = []
    client = mlflow.MlflowClient()
    for run in running:
        tags = run.data.tags
        if tags.get(keys.RUN_HOST) == socket.gethostname() and not pid_alive(int(tags.get(keys.RUN_PID, 0))):
            client.set_tag(run.info.run_id, keys.RUN_ERROR, "its process died during the export")
            _terminate(client, run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
    return ended


def fail_stale_run(run_id: str, reason: str) -> None:
    """End a run whose trial's process died (or lost the server), unless it already ended."""
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    if run.info.status == "RUNNING":
        client.set_tag(run_id, keys.STATE, "FAIL")
        client.set_tag(run_id, keys.RUN_ERROR, run.data.tags.get(keys.RUN_ERROR, reason))
        _terminate(client, run_id, "FAILED")


def numpy_dataset(features: np.ndarray, targets: np.ndarray, name: str, source: str, digest: str):
    """Describe the training data once per process; each trial links it as an input."""
    with warnings.catch_warnings():
        # MLflow registers two identical local-path source types and warns that it picked one.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        # ... and, for a table, that the integer label column could not hold missing values (it has none).
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        if features.dtype.names is None:
            return mlflow.data.from_numpy(features, targets=targets, name=name, source=source, digest=digest)
        # A table's rows: MLflow's pandas dataset records its columns by name and type.
        frame = pd.DataFrame({column: features[column] for column in features.dtype.names})
        target = "label" if "label" not in frame.columns else "_label"
        frame[target] = targets
        dataset = mlflow.data.from_pandas(frame, targets=target, name=name, source=source, digest=digest)
        dataset.schema  # inferred (and cached) here, under the warning filters above
        return dataset
