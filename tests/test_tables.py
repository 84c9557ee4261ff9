"""Tables: CSV and Parquet files with a label column, numeric features and categorical text columns.

scikit-learn's bundled breast-cancer table (569 rows, 30 measurements) is written out with its diagnosis as
text and one categorical column, `size`, binned from the mean radius; the test rows hold a size training
never saw. A sweep runs on it for real, each trial's logged model is loaded with MLflow's pyfunc and fed
the raw test rows, and the export predicts from a CSV.
"""

from __future__ import annotations

import json

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest

from pipeline import cli
from pipeline.config import DataConfig
from pipeline.data import load_splits
from pipeline.data.tables import load_table
from pipeline.errors import DataError
from pipeline.hyperparameters import Hyperparameters
from pipeline.model import build_model, model_inputs
from pipeline.preprocessing import fill_gaps, fit_stats, has_gaps

from conftest import write_sweep


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame["size"] = pd.cut(frame["mean radius"], [0, 12, 15, 100], labels=["small", "medium", "large"]).astype(str)
    frame["diagnosis"] = bunch.target.map(dict(enumerate(bunch.target_names)))
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


def table_config(path, **changes) -> DataConfig:
    settings = {"dataset": "table", "data_dir": str(path), "label": "diagnosis", "categorical": ("size",)}
    return DataConfig(**{**settings, **changes})


def test_a_table_sweeps_serves_rows_through_mlflow_and_exports(cancer, tmp_path, stores, capsys):
    train, test = cancer.iloc[:450].copy(), cancer.iloc[450:].copy()
    train.loc[train.index[:20], "mean texture"] = np.nan  # imputed from the training split
    test.loc[test.index[:5], "size"] = "enormous"  # a category training never saw
    test.loc[test.index[5:12], "mean texture"] = np.nan  # served as they are: the model fills them
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_parquet(tmp_path / "test.parquet")
    path = write_sweep(tmp_path, "table.yaml", study__n_trials=2, study__storage=stores["storage"],
                       tracking__tracking_uri=stores["tracking_uri"], data__data_dir=str(tmp_path / "train.csv"),
                       data__label="diagnosis", data__categorical=["size"], data__missing="impute",
                       data__test_file="test.parquet", search_space__epochs=15, search_space__batch_size=16)
    assert cli.main(["run", str(path), "--no-progress"]) == 0

    mlflow.set_tracking_uri(stores["tracking_uri"])
    runs = mlflow.search_runs(experiment_names=["wine-table"], filter_string="tags.`sweep.role` = 'trial'")
    assert len(runs) == 2
    for _, run in runs.iterrows():
        assert run["metrics.test_accuracy"] > 0.8, "well above chance (0.63) on this table"
        served = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model").predict(test)  # the label column too
        assert list(served.columns) == ["benign", "malignant"]
        accuracy = np.mean(served.idxmax(axis=1).to_numpy() == test["diagnosis"].to_numpy())
        assert accuracy == pytest.approx(run["metrics.test_accuracy"], abs=1e-9)

    out = tmp_path / "export"
    assert cli.main(["export", str(path), "--out", str(out), "--name", "cancer"]) == 0
    info = json.loads((out / "metadata.json").read_text())
    assert info["input"]["columns"]["size"] == "text" and info["input"]["columns"]["mean radius"] == "number"
    assert "diagnosis" not in info["input"]["columns"] and info["class_names"] == ["benign", "malignant"]
    test.head(8).drop(columns="diagnosis").to_csv(tmp_path / "rows.csv", index=False)  # gaps in rows 5-7
    capsys.readouterr()
    assert cli.main(["predict", str(out), str(tmp_path / "rows.csv"), "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert len(answers) == 8 and {a["class"] for a in answers} <= {"benign", "malignant"}


def test_class_names_come_from_the_label_values_and_a_split_keeps_classes(cancer, tmp_path):
    frame = cancer.assign(diagnosis=cancer["diagnosis"].map({"benign": 10, "malignant": 2}))
    frame.to_csv(tmp_path / "t.csv", index=False)
    raw = load_table(tmp_path / "t.csv", table_config(tmp_path / "t.csv", test_fraction=0.25), seed=3)
    assert raw.class_names == ("2", "10"), "integers sorted as numbers"
    assert len(raw.y_test) == 143 and abs(raw.y_test.mean() - raw.y_train.mean()) < 0.02, "stratified"
    assert raw.x_train.dtype["size"].kind == "U" and raw.x_train.dtype["mean radius"] == np.float32


def test_missing_values_are_dropped_or_imputed_from_the_training_split_alone(cancer, tmp_path):
    frame = cancer.copy()
    frame.loc[:39, "mean area"] = np.nan
    frame.loc[40:44, "size"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"missing values in 'mean area' \(40 rows\), 'size' \(5 rows\)"):
        load_table(tmp_path / "t.csv", table_config(tmp_path / "t.csv"), seed=0)
    dropped = load_table(tmp_path / "t.csv", table_config(tmp_path / "t.csv", missing="drop"), seed=0)
    assert len(dropped.y_train) + len(dropped.y_test) == len(frame) - 45
    splits = load_splits(table_config(tmp_path / "t.csv", missing="impute"), seed=0)
    for x in (splits.x_train, splits.x_val, splits.x_test):
        assert np.isnan(x["mean area"]).any(), "the gaps stay: the model fills them, in training and serving alike"
    fills = fit_stats(splits.x_train).fills
    assert fills["mean area"] == pytest.approx(np.nanmean(splits.x_train["mean area"]), rel=1e-6), "training's mean"
    assert abs(fills["mean area"] - frame["mean area"].mean()) > 0.01, "not the whole table's (654.775)"
    sizes = splits.x_train["size"][splits.x_train["size"] != ""]
    assert fills["size"] == max(set(sizes), key=list(sizes).count), "the training split's most frequent size"


def test_the_model_fills_gaps_with_the_training_split_values(cancer, tmp_path):
    frame = cancer.copy()
    frame.loc[:59, "mean area"] = np.nan
    frame.loc[60:79, "size"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    splits = load_splits(table_config(tmp_path / "t.csv", missing="impute"), seed=0)
    stats = fit_stats(splits.x_train)
    model = build_model(Hyperparameters(units=8), splits.inputs, 2, stats)
    gappy = np.concatenate([splits.x_val, splits.x_test])
    assert has_gaps(gappy)
    filled = fill_gaps(gappy, stats.fills)
    np.testing.assert_array_equal(model.predict(model_inputs(gappy), verbose=0),
                                  model.predict(model_inputs(filled), verbose=0))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(model_inputs(gappy), verbose=0),
                                  model.predict(model_inputs(filled), verbose=0))


def test_gaps_only_outside_the_training_split_are_filled_by_the_model_too(cancer, tmp_path):
    """A study that imputes gives its model the fills even when training had no gaps: the rows it is tested
    and served on may have them, and they are filled as training would have filled them."""
    train, test = cancer.iloc[:450].copy(), cancer.iloc[450:].copy()
    test.loc[test.index[:4], "mean area"] = np.nan
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    splits = load_splits(table_config(tmp_path / "train.csv", missing="impute", test_file="test.csv"), seed=0)
    assert splits.fills_gaps and has_gaps(splits.x_test) and not has_gaps(splits.x_train)
    stats = fit_stats(splits.x_train, splits.fills_gaps)
    assert stats.fills["mean area"] == pytest.approx(splits.x_train["mean area"].mean(dtype=np.float64), rel=1e-6)
    model = build_model(Hyperparameters(units=8), splits.inputs, 2, stats)
    np.testing.assert_array_equal(model.predict(model_inputs(splits.x_test), verbose=0),
                                  model.predict(model_inputs(fill_gaps(splits.x_test, stats.fills)), verbose=0))
    assert fit_stats(splits.x_train).fills == {}, "a study that refuses or drops gaps: no fills, gaps refused"


def test_columns_named_like_the_model_s_layers_train_save_and_serve(tmp_path):
    names = ["numbers", "features", "probabilities", "dense_0", "normalize", "where", "isnan_1", "column_numbers",
             "onehot_kind", "a b", "a_b", "dense", "dense!"]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(80, len(names))), columns=names).assign(kind=rng.choice(["p", "q"], 80))
    frame["label"] = np.where(frame["numbers"] > 0, "up", "down")
    frame.loc[:4, "dense_0"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    config = table_config(tmp_path / "t.csv", label="label", categorical=("kind",), missing="impute")
    splits = load_splits(config, seed=0)
    model = build_model(Hyperparameters(units=8, hidden_layers=3), splits.inputs, 2, fit_stats(splits.x_train))
    model.fit(model_inputs(splits.x_train), splits.y_train, epochs=2, verbose=0)
    assert sorted(model.input) == sorted([*names, "kind"]), "served by the columns' own names"
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    from pipeline.tracking.table_pyfunc import table_feed

    probabilities = loaded.predict(table_feed(loaded, pd.read_csv(tmp_path / "t.csv")), verbose=0)
    assert probabilities.shape == (80, 2) and np.isfinite(probabilities).all()


def test_test_file_labels_and_codes_match_training_by_value(tmp_path):
    train = pd.DataFrame({"x": np.arange(40.0), "code": [1, 2] * 20, "label": [0, 1] * 20})
    test = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "code": [1.0, 2.0, np.nan, 1.0], "label": [0.0, 1.0, 0.0, 1.0]})
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    assert str(pd.read_csv(tmp_path / "test.csv")["label"].dtype) == "float64"
    config = table_config(tmp_path / "train.csv", label="label", categorical=("code",), missing="impute",
                          test_file="test.csv")
    raw = load_table(tmp_path / "train.csv", config, seed=0)
    assert raw.class_names == ("0", "1") and raw.y_test.tolist() == [0, 1, 0, 1], "1.0 is the class 1"
    assert raw.x_test["code"].tolist() == ["1", "2", "", "1"] and set(raw.x_train["code"]) == {"1", "2"}


def test_a_boolean_column_with_gaps_is_a_numeric_column(tmp_path):
    (tmp_path / "t.csv").write_text("flag,x,label\nTrue,1,a\nFalse,2,b\n,3,a\nTrue,4,b\n")
    raw = load_table(tmp_path / "t.csv", table_config(tmp_path / "t.csv", label="label", categorical=(),
                                                      missing="impute", test_fraction=0.5), seed=0)
    flags = np.concatenate([raw.x_train, raw.x_test])["flag"]
    assert flags.dtype == np.float32 and np.isnan(flags).sum() == 1 and sorted(flags[~np.isnan(flags)]) == [0, 1, 1]


def test_a_non_numeric_column_not_listed_as_categorical_is_refused_by_name(cancer, tmp_path):
    cancer.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="column 'size' is not numeric .* list it in data.categorical"):
        load_table(tmp_path / "t.csv", table_config(tmp_path / "t.csv", categorical=()), seed=0)
