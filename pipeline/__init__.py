"""Hyperparameter sweeps for Keras models: a YAML file in, an Optuna study out, every trial an MLflow run.

The Python API (pipeline.api) is what the `sweep` command runs; importing it loads no TensorFlow, Optuna or
MLflow until a method needs them.
"""

from pipeline.api import Best, Comparison, Exported, Sweep, init_sweep, list_studies
from pipeline.errors import (BadInputError, DataError, ExportError, PredictError, StudyError, SweepConfigError,
                             SweepError, SweepInterrupted, TrackingError)

__all__ = ["BadInputError", "Best", "Comparison", "DataError", "ExportError", "Exported", "PredictError", "StudyError",
           "Sweep", "SweepConfigError", "SweepError", "SweepInterrupted", "TrackingError", "init_sweep",
           "list_studies"]
