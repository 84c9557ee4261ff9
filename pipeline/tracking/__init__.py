"""Experiment tracking: the only package that talks to MLflow (store, runs written, runs read back)."""

from pipeline.tracking.reading import (experiment_url, load_model_uri, load_trial_model, load_trial_preprocessing,
                                       logged_metric, trial_runs_frame, ui_command)
from pipeline.tracking.runs import (TrialRecorder, export_run, fail_stale_run, log_study_figures, numpy_dataset,
                                    open_parent_run, parent_run_closer, record_best, trial_run)
from pipeline.tracking.store import (CHAMPION, ERROR, MODEL_NAME, PLOTS, PREPROCESSING_FILE, ROLE, SOURCE_RUN, STATE,
                                     STUDY, TRIAL, Tracker, connect)

__all__ = [
    "CHAMPION", "ERROR", "MODEL_NAME", "PLOTS", "PREPROCESSING_FILE", "ROLE", "SOURCE_RUN", "STATE", "STUDY", "TRIAL",
    "Tracker", "TrialRecorder", "connect", "experiment_url", "export_run", "fail_stale_run", "load_model_uri",
    "load_trial_model", "load_trial_preprocessing", "log_study_figures", "logged_metric", "numpy_dataset",
    "open_parent_run", "parent_run_closer", "record_best", "trial_run", "trial_runs_frame", "ui_command",
]
