"""Peer 3 of row k: a plain Optuna script, written the way Optuna's own Keras and MLflow examples write it.

    python bench/peer_optuna.py --seed 1 --timeout 1200 --tracking-uri sqlite:///x.db --out result.json

TPE and a median pruner (the default sweep's settings) over the default sweep's space, optuna-integration's
KerasPruningCallback on val_accuracy and its MLflowCallback (one flat run per trial, as in the examples).
Validation chooses; each trial's test accuracy is kept as a user attribute and only reported.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import optuna
from optuna_integration import KerasPruningCallback, MLflowCallback

import peer_common as common


def make_objective(seed: int, tally: list):
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = common.load_split(seed)
    mean, variance = common.feature_stats(x_train)

    def preprocess(x: np.ndarray, method: str) -> np.ndarray:
        return (x - mean) / np.sqrt(variance + 1e-7) if method == "standardize" else x / 255.0

    def objective(trial: optuna.Trial) -> float:
        keras.backend.clear_session()
        units = trial.suggest_int("units", *common.UNITS, log=True)
        layers = trial.suggest_int("hidden_layers", *common.LAYERS)
        dropout = trial.suggest_float("dropout", *common.DROPOUT)
        activation = trial.suggest_categorical("activation", common.ACTIVATIONS)
        optimizer = trial.suggest_categorical("optimizer", common.OPTIMIZERS)
        learning_rate = trial.suggest_float("learning_rate", *common.LEARNING_RATE, log=True)
        epochs = trial.suggest_int("epochs", *common.EPOCHS)
        batch_size = trial.suggest_categorical("batch_size", common.BATCH_SIZES)
        method = trial.suggest_categorical("preprocessing", common.PREPROCESSING)

        model = keras.Sequential([keras.Input((784,)), *common.dense_stack(units, layers, activation, dropout)])
        model.compile(optimizer=keras.optimizers.get({"class_name": optimizer,
                                                      "config": {"learning_rate": learning_rate}}),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(preprocess(x_train, method), y_train, batch_size=batch_size, epochs=epochs,
                            validation_data=(preprocess(x_val, method), y_val), verbose=0,
                            callbacks=[KerasPruningCallback(trial, "val_accuracy"), common.EpochCounter(tally)])
        trial.set_user_attr("epochs", len(history.history["loss"]))
        trial.set_user_attr("test_accuracy", model.evaluate(preprocess(x_test, method), y_test, verbose=0)[1])
        return history.history["val_accuracy"][-1]

    return objective


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracking-uri", required=True)
    args = common.parse_args(parser)

    start, tally = time.time(), []
    keras.utils.set_random_seed(args.seed)
    objective = make_objective(args.seed, tally)
    mlflc = MLflowCallback(tracking_uri=args.tracking_uri, metric_name="val_accuracy")
    study = optuna.create_study(study_name="peer-optuna", direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=args.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3))
    study.optimize(objective, timeout=args.timeout, callbacks=[mlflc])
    states = [t.state.name for t in study.trials]
    common.write_result(
        args.out, wall_s=time.time() - start, epochs=len(tally),
        complete=states.count("COMPLETE"), pruned=states.count("PRUNED"),
        val_accuracy=study.best_value, test_accuracy=study.best_trial.user_attrs["test_accuracy"],
        params=study.best_params,
        trials=[(t.datetime_complete.timestamp(), t.value, t.user_attrs["test_accuracy"])  # row q's curves
                for t in study.trials if t.state.name == "COMPLETE"])


if __name__ == "__main__":
    main()
