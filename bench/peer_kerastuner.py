"""Peer 2 of row k: KerasTuner's Hyperband or BayesianOptimization on the default sweep's space.

    python bench/peer_kerastuner.py hyperband --seed 1 --timeout 1200 --directory /tmp/kt --out result.json

A HyperModel as KerasTuner's guide writes one: the preprocessing inside the model (a choice between
per-pixel standardization and /255), batch size (and, for Bayesian, epochs) chosen in `fit`. Hyperband
chooses epochs itself (max_epochs 40, the space's top). KerasTuner has no wall-clock budget, so a callback
ends the search when a trial would start after the deadline: the trial under way finishes, as Optuna's
`timeout` lets it. The best trial by validation (KerasTuner's score: its best epoch) is reloaded with
`get_best_models` and scored once on the test set.
"""

from __future__ import annotations

import argparse
import time

import keras
import keras_tuner

import peer_common as common


class BudgetSpent(BaseException):
    """Raised past the deadline; a BaseException, since KerasTuner retries trials that raise Exception."""


class Deadline(keras.callbacks.Callback):
    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline

    def on_train_begin(self, logs=None):
        if time.time() > self.deadline:
            raise BudgetSpent()


class DenseNet(keras_tuner.HyperModel):
    def __init__(self, mean, variance, tune_epochs: bool):
        super().__init__()
        self.mean, self.variance, self.tune_epochs = mean, variance, tune_epochs

    def build(self, hp):
        scale = (keras.layers.Normalization(mean=self.mean, variance=self.variance)
                 if hp.Choice("preprocessing", common.PREPROCESSING) == "standardize"
                 else keras.layers.Rescaling(1.0 / 255))
        stack = common.dense_stack(hp.Int("units", *common.UNITS, sampling="log"), hp.Int("hidden_layers", *common.LAYERS),
                                   hp.Choice("activation", common.ACTIVATIONS),
                                   hp.Float("dropout", *common.DROPOUT))
        model = keras.Sequential([keras.Input((784,)), scale, *stack])
        optimizer = keras.optimizers.get({"class_name": hp.Choice("optimizer", common.OPTIMIZERS), "config": {
            "learning_rate": hp.Float("learning_rate", *common.LEARNING_RATE, sampling="log")}})
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, hp, model, *args, **kwargs):
        if self.tune_epochs:
            kwargs["epochs"] = hp.Int("epochs", *common.EPOCHS)
        return model.fit(*args, batch_size=hp.Choice("batch_size", common.BATCH_SIZES), **kwargs)


def make_tuner(kind: str, hypermodel: DenseNet, seed: int, directory: str):
    shared = dict(objective="val_accuracy", seed=seed, directory=directory, project_name=kind, overwrite=True)
    if kind == "hyperband":
        return keras_tuner.Hyperband(hypermodel, max_epochs=common.EPOCHS[1], factor=3, hyperband_iterations=100,
                                     **shared)
    return keras_tuner.BayesianOptimization(hypermodel, max_trials=10_000, **shared)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tuner", choices=("hyperband", "bayesian"))
    parser.add_argument("--directory", required=True)
    args = common.parse_args(parser)

    start, tally = time.time(), []
    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = common.load_split(args.seed)
    hypermodel = DenseNet(*common.feature_stats(x_train), tune_epochs=args.tuner == "bayesian")
    tuner = make_tuner(args.tuner, hypermodel, args.seed, args.directory)
    try:
        tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=common.EPOCHS[1], verbose=0,
                     callbacks=[common.EpochCounter(tally), Deadline(start + args.timeout)])
    except BudgetSpent:
        pass
    search_s = time.time() - start
    statuses = [t.status for t in tuner.oracle.trials.values()]
    best_trial = tuner.oracle.get_best_trials(1)[0]
    best_model = tuner.get_best_models(1)[0]
    common.write_result(
        args.out, wall_s=search_s, epochs=len(tally), complete=statuses.count("COMPLETED"),
        pruned=0, val_accuracy=best_trial.score, test_accuracy=best_model.evaluate(x_test, y_test, verbose=0)[1],
        params=best_trial.hyperparameters.values)


if __name__ == "__main__":
    main()
