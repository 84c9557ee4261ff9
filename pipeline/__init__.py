"""Hyperparameter sweeps for Keras models: a YAML file in, an Optuna study out, every trial an MLflow run."""
