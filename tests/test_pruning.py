"""Pruning: the per-epoch decision (scripted histories), by epoch and by fraction of the schedule, and the
MLflow record a pruned trial leaves."""

from __future__ import annotations

import math
import random

import mlflow
import optuna
import pytest
from optuna.trial import TrialState, create_trial
from optuna.distributions import FloatDistribution

from pipeline import cli, stores as store_uris
from pipeline import keys
from pipeline.config import PrunerConfig
from pipeline.fraction_pruner import FractionMedianPruner
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


def _scheduled(values: dict[int, float], epochs: int, state: TrialState = TrialState.COMPLETE):
    """A trial set to train `epochs` epochs (recorded as the pipeline's trials record it) with `values` so far."""
    return create_trial(state=state, value=values[max(values)] if state == TrialState.COMPLETE else None,
                        intermediate_values=values, user_attrs={keys.PARAMS: {"epochs": epochs}},
                        params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)})


def _study_of(trials: list, direction: str = "maximize") -> optuna.Study:
    study = optuna.create_study(direction=direction)
    for trial in trials:
        study.add_trial(trial)
    return study


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_by_fraction_decides_as_the_median_pruner_when_schedules_are_equal(direction):
    """Same epochs everywhere: the same fraction is the same epoch, so the decisions must be Optuna's own,
    including trials that stopped early, NaN values and the start-up and warm-up counts."""
    rng = random.Random(7)
    decisions = 0
    for case in range(60):
        epochs, startup, warmup = 8, rng.randint(0, 4), rng.randint(0, 3)
        finished = []
        for _ in range(rng.randint(0, 6)):
            length = rng.choice([epochs, epochs, rng.randint(1, epochs)])  # some stopped early
            finished.append(_scheduled({e: rng.random() for e in range(1, length + 1)}, epochs))
        study = _study_of(finished, direction)
        for step in range(1, epochs + 1):
            values = {e: (math.nan if rng.random() < 0.05 else rng.random()) for e in range(1, step + 1)}
            running = _scheduled(values, epochs, TrialState.RUNNING)
            ours = FractionMedianPruner(startup, warmup).prune(study, running)
            optunas = make_pruner(PrunerConfig("median", startup, warmup)).prune(study, running)
            assert ours == optunas, (case, step, startup, warmup)
            decisions += ours
    assert decisions > 20, "the comparison must include trials that are pruned"


def test_by_fraction_compares_a_long_schedule_with_the_others_at_the_same_share_of_theirs():
    """A cosine schedule anneals sooner in a short trial: at epoch 5 a 10-epoch trial is half done and scores
    0.88, a 40-epoch trial an eighth done and scores 0.85. By epoch it is cut; by fraction it is compared with
    the short trials an eighth into theirs (epoch 1.25: 0.80 + 0.25 x (0.83 - 0.80)) and kept."""
    short = {1: 0.80, 2: 0.83, 3: 0.85, 4: 0.87, 5: 0.88, 6: 0.885, 7: 0.89, 8: 0.893, 9: 0.895, 10: 0.896}
    study = _study_of([_scheduled(short, 10), _scheduled({k: v - 0.002 for k, v in short.items()}, 10)])
    long_trial = _scheduled({1: 0.78, 2: 0.81, 3: 0.83, 4: 0.84, 5: 0.85}, 40, TrialState.RUNNING)
    assert bool(make_pruner(PrunerConfig("median", 1, 0)).prune(study, long_trial)) is True  # a NumPy bool
    assert make_pruner(PrunerConfig("median", 1, 0, by="fraction")).prune(study, long_trial) is False
    hopeless = _scheduled({1: 0.30, 2: 0.32, 3: 0.33, 4: 0.33, 5: 0.34}, 40, TrialState.RUNNING)
    assert make_pruner(PrunerConfig("median", 1, 0, by="fraction")).prune(study, hopeless) is True
    # The other way round: a short trial half done is held to the long ones half done (0.80 at epoch 20), not
    # to their fifth epoch (0.725), which any short schedule passes.
    study = _study_of([_scheduled({e: 0.70 + 0.2 * e / 40 for e in range(1, 41)}, 40)])
    weak = _scheduled({1: 0.70, 2: 0.74, 3: 0.76, 4: 0.77, 5: 0.78}, 10, TrialState.RUNNING)
    assert bool(make_pruner(PrunerConfig("median", 1, 0)).prune(study, weak)) is False
    assert FractionMedianPruner(1, 0).prune(study, weak) is True
    assert FractionMedianPruner(1, 0).prune(study, _scheduled({**weak.intermediate_values, 5: 0.81}, 10,
                                                              TrialState.RUNNING)) is False


def test_a_sweep_pruned_by_fraction_runs_and_records_it(tmp_path, data_dir, stores):
    from conftest import write_sweep

    path = write_sweep(
        tmp_path, study__n_trials=4, study__sampler="random", study__seed=3,
        study__pruner={"type": "median", "startup_trials": 1, "warmup_epochs": 0, "by": "fraction"},
        data__subset=600, data__test_subset=200, data__data_dir=str(data_dir),
        study__storage=stores["storage"], tracking__tracking_uri=stores["tracking_uri"],
        search_space__epochs={"type": "categorical", "choices": [2, 4]},
        search_space__learning_rate={"type": "categorical", "choices": [0.003, 1e-7]})
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    study = optuna.load_study(study_name="fashion-mnist-smoke", storage=store_uris.resolve_uri(stores["storage"]))
    assert len(study.trials) == 4 and any(t.state == TrialState.PRUNED for t in study.trials), \
        [(t.params, t.intermediate_values) for t in study.trials]
    parent = mlflow.MlflowClient(store_uris.resolve_uri(stores["tracking_uri"])).get_run(
        study.user_attrs[keys.PARENT_RUN_ID])
    assert "'by': 'fraction'" in parent.data.tags[f"{keys.SETTING_PREFIX}pruner"]


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
