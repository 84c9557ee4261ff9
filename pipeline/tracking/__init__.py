"""Experiment tracking: the only package that talks to MLflow (store, runs written, runs read back).

Keras models in MLflow live in `pipeline.tracking.models`, imported only where TensorFlow is wanted.
"""

from pipeline.tracking.reading import metric_history, run_metrics, runs_url, test_metric, trial_runs_frame, ui_command
from pipeline.tracking.runs import (RunRecorder, close_parent_run, end_dead_export_runs, export_run, fail_stale_run,
                                    log_parent_file, log_parent_text, log_study_figures, numpy_dataset,
                                    open_parent_run, parent_of, record_best, retraining_run, trial_run)
from pipeline.tracking.store import (STORE_ERRORS, Tracker, check_readable, check_reachable, connect, existing_store,
                                     prepare)

__all__ = [
    "STORE_ERRORS", "RunRecorder", "Tracker", "check_readable", "check_reachable", "close_parent_run", "connect", "end_dead_export_runs",
    "existing_store", "export_run", "metric_history", "fail_stale_run", "log_parent_file", "log_parent_text", "log_study_figures",
    "numpy_dataset", "prepare",
    "open_parent_run", "parent_of", "record_best", "retraining_run", "run_metrics", "runs_url", "test_metric",
    "trial_run", "trial_runs_frame", "ui_command",
]
