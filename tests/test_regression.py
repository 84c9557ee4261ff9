"""Regression (`task: regression`): a table's or an npz's numbers predicted in the label's own units.

Sweeps run for real through the CLI on scikit-learn's diabetes table (the shipped example, with test rows of
its own file) and on a small npz of a noisy linear target; each trial's logged model is loaded with MLflow's
pyfunc, fed the raw test inputs, and must reproduce the logged test RMSE in one column named after the label.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipeline import cli, keys
from pipeline.config import DataConfig
from pipeline.data import load_splits
from pipeline.hyperparameters import Hyperparameters
from pipeline.model import Design, build_model, model_inputs
from pipeline.preprocessing import fit_stats
from pipeline.tasks import regression
from pipeline.tracking import array_pyfunc

from conftest import SWEEPS, write_sweep

PLOTS = {f"{keys.PLOTS}/{name}.png" for name in ("learning_curves", "predicted_vs_actual", "residuals")} | {
    f"{keys.PLOTS}/regression_report.json"}


@pytest.fixture(scope="module")
def diabetes() -> pd.DataFrame:
    return pd.read_csv(SWEEPS / "data" / "diabetes.csv")


def trial_runs(tracking_uri: str, experiment: str) -> pd.DataFrame:
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`sweep.role` = 'trial'")


def check_run(run, served: pd.DataFrame, labels: np.ndarray, label: str) -> None:
    """The run's curves, metrics and plots, and its served model reproducing its test RMSE."""
    client = mlflow.MlflowClient()
    curve = [m.value for m in client.get_metric_history(run.run_id, "val_rmse")]
    assert len(curve) == run["metrics.epochs_run"] and all(np.isfinite(curve))
    assert run["metrics.test_r2"] > 0, "the model learned: better than predicting the mean"
    assert run["metrics.test_mae"] <= run["metrics.test_rmse"]
    assert list(served.columns) == [label] and len(served) == len(labels)
    rmse = float(np.sqrt(np.mean(np.square(served[label].to_numpy(np.float64) - labels))))
    assert rmse == pytest.approx(run["metrics.test_rmse"], rel=1e-5)
    assert PLOTS <= {f.path for f in client.list_artifacts(run.run_id, keys.PLOTS)}


def test_a_regression_table_sweeps_and_serves_in_the_label_s_units(diabetes, tmp_path, stores):
    diabetes.iloc[:350].to_csv(tmp_path / "train.csv", index=False)
    test = diabetes.iloc[350:]
    test.to_csv(tmp_path / "test.csv", index=False)
    path = write_sweep(tmp_path, "regression.yaml", study__n_trials=2, study__storage=stores["storage"],
                       tracking__tracking_uri=stores["tracking_uri"], data__data_dir=str(tmp_path / "train.csv"),
                       data__test_file="test.csv", search_space__epochs=40, search_space__batch_size=16,
                       search_space__learning_rate=0.003)
    assert cli.main(["run", str(path), "--no-progress"]) == 0

    runs = trial_runs(stores["tracking_uri"], "diabetes-regression")
    assert len(runs) == 2
    for _, run in runs.iterrows():
        served = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model").predict(test)  # the label column too
        check_run(run, served, test["progression"].to_numpy(np.float64), "progression")
        assert run["metrics.test_rmse"] < test["progression"].std(), "below the spread of the label"


def test_a_regression_npz_serves_one_column_named_y(tmp_path, stores):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = 1000.0 + 40.0 * (x @ rng.normal(size=6)) + rng.normal(scale=5.0, size=300)  # far from mean 0, sd 1
    np.savez(tmp_path / "numbers.npz", x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    path = write_sweep(tmp_path, "regression.yaml", study__n_trials=1, study__storage=stores["storage"],
                       tracking__tracking_uri=stores["tracking_uri"], data__dataset="npz",
                       data__data_dir=str(tmp_path / "numbers.npz"), data__label=None, data__categorical=None,
                       data__missing=None, data__test_fraction=None, search_space__epochs=40,
                       search_space__batch_size=16, search_space__learning_rate=0.01, search_space__loss="mae")
    assert cli.main(["run", str(path), "--no-progress"]) == 0

    (_, run), = trial_runs(stores["tracking_uri"], "diabetes-regression").iterrows()
    served = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model").predict(x[240:])
    check_run(run, served, y[240:], "y")
    assert run["metrics.test_r2"] > 0.8, "a linear target with little noise is learned well"


def test_regression_splits_are_seeded_shuffles_and_the_output_layer_returns_the_label_s_units(tmp_path):
    """No stratification (numbers have no classes), the same split for the same seed, and a model whose last
    layer maps the standardized prediction back with the training split's mean and standard deviation."""
    config = DataConfig(dataset="table", data_dir=str(SWEEPS / "data" / "diabetes.csv"), label="progression",
                        task="regression")
    splits, again = load_splits(config, seed=3), load_splits(config, seed=3)
    assert splits.task == "regression" and splits.class_names == ("progression",)
    assert splits.y_train.dtype == np.float64 and np.array_equal(splits.y_val, again.y_val)
    assert not np.array_equal(splits.y_val, load_splits(config, seed=4).y_val)
    stats = fit_stats(splits.x_train, y_train=splits.regression_targets)
    assert stats.target_mean == pytest.approx(splits.y_train.mean())
    assert stats.target_std == pytest.approx(splits.y_train.std())
    model = build_model(Hyperparameters(units=4), splits.inputs, 1, stats, Design(task="regression"))
    assert model.name == array_pyfunc.REGRESSOR == regression.MODEL_NAME, "the served pyfunc tells it by its name"
    standardized = regression.trainer(model, Hyperparameters(units=4), stats).predict(
        model_inputs(splits.x_test), verbose=0)
    served = model.predict(model_inputs(splits.x_test), verbose=0)
    np.testing.assert_allclose(served, standardized * stats.target_std + stats.target_mean, rtol=1e-5)


def test_metrics_score_in_the_label_s_units():
    labels = np.array([10.0, 20.0, 30.0, 40.0])
    scores = regression.score(np.array([[12.0], [18.0], [30.0], [44.0]]), labels)
    assert scores[keys.TEST_RMSE] == pytest.approx(np.sqrt((4 + 4 + 0 + 16) / 4))
    assert scores[keys.TEST_MAE] == pytest.approx(2.0)
    assert scores[keys.TEST_R2] == pytest.approx(1 - 24 / 500)
