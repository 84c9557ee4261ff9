"""Pruning: the per-epoch decision (scripted histories) and the MLflow record a pruned trial leaves."""

from __future__ import annotations

import mlflow
import optuna
import pytest
from optuna.trial import TrialState, create_trial
from optuna.distributions import FloatDistribution

from pipeline import cli, stores as store_uris
from pipeline.config import PrunerConfig
from pipeline.trial import pruning_hook as _pruning_hook
from pipeline.study import make_pruner


def scripted_study(values_by_trial: list[dict[int, float]]) -> optuna.Study:
    study = optuna.create_study(direction="maximize", pruner=make_pruner(PrunerConfig("median", 1, 0)))
    for values in values_by_trial:
        study.add_trial(create_trial(value=values[max(values)], intermediate_values=values,
                                     params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}))
    return study


def test_median_pruner_cuts_a_trial_below_the_median_at_the_same_epoch():
    study = scripted_study([{1: 0.80, 2: 0.85, 3: 0.87}, {1: 0.78, 2: 0.84, 3: 0.86}])
    bad = _pruning_hook(study.ask(), "val_accuracy")
    assert bad(1, {"val_accuracy": 0.60}) is True
    good = _pruning_hook(study.ask(), "val_accuracy")
    assert good(1, {"val_accuracy": 0.81}) is False and good(2, {"val_accuracy": 0.86}) is False


def test_warmup_epochs_and_none_never_prune_early():
    study = scripted_study([{1: 0.80, 2: 0.85, 3: 0.86}])
    study.pruner = make_pruner(PrunerConfig("median", 1, 2))
    hook = _pruning_hook(study.ask(), "val_accuracy")
    assert hook(1, {"val_accuracy": 0.1}) is False and hook(2, {"val_accuracy": 0.1}) is False
    assert hook(3, {"val_accuracy": 0.1}) is True
    study.pruner = make_pruner(PrunerConfig("none"))
    assert _pruning_hook(study.ask(), "val_accuracy")(3, {"val_accuracy": 0.0}) is False


def test_a_pruned_trial_is_a_complete_mlflow_record(tmp_path, data_dir, stores):
    from conftest import write_sweep

    # A learning rate of 1e-7 cannot learn in 3 epochs: such trials fall below the median and are cut.
    path = write_sweep(
        tmp_path, study__n_trials=4, study__sampler="random", study__seed=3,
        study__pruner={"type": "median", "startup_trials": 1, "warmup_epochs": 0},
        data__subset=600, data__test_subset=200, data__data_dir=str(data_dir),
        study__storage=stores["storage"], tracking__tracking_uri=stores["tracking_uri"],
        search_space__epochs=3, search_space__learning_rate={"type": "categorical", "choices": [0.003, 1e-7]})
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    study = optuna.load_study(study_name="fashion-mnist-smoke", storage=store_uris.resolve_uri(stores["storage"]))
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, [t.params for t in study.trials]
    client = mlflow.MlflowClient(store_uris.resolve_uri(stores["tracking_uri"]))
    for trial in pruned:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        epochs = int(run.data.metrics["epochs_run"])
        assert run.info.status == "KILLED", "the run shows it did not finish normally"
        assert run.data.tags["sweep.trial_state"] == "PRUNED"
        assert 1 <= epochs < 3
        for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == list(range(1, epochs + 1))
        assert run.data.metrics["val_accuracy"] == pytest.approx(trial.intermediate_values[epochs])
        assert not run.outputs.model_outputs, "no model is logged for a trial that cannot win"
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert all(client.get_run(t.user_attrs["mlflow_run_id"]).data.metrics["epochs_run"] == 3 for t in complete)
