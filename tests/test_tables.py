"""Tables: CSV and Parquet files with a label column, numeric features and categorical text columns.

scikit-learn's bundled breast-cancer table (569 rows, 30 measurements) is written out with its diagnosis as
text and one categorical column, `size`, binned from the mean radius; the test rows hold a size training
never saw. A sweep runs on it for real, each trial's logged model is loaded with MLflow's pyfunc and fed
the raw test rows, and the export predicts from a CSV.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipeline import cli
from pipeline.config import DataConfig
from pipeline.data import load_splits
from pipeline.data.tables import load_table
from pipeline.errors import DataError

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
    test.head(3).drop(columns="diagnosis").to_csv(tmp_path / "rows.csv", index=False)
    capsys.readouterr()
    assert cli.main(["predict", str(out), str(tmp_path / "rows.csv"), "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert len(answers) == 3 and {a["class"] for a in answers} <= {"benign", "malignant"}


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
    raw = load_table(tmp_path / "t.csv", table_config(tmp_path / "t.csv", missing="impute"), seed=0)
    assert np.isnan(raw.x_train["mean area"]).any(), "the raw table keeps its gaps until the split"
    splits = load_splits(table_config(tmp_path / "t.csv", missing="impute"), seed=0)
    for x in (splits.x_train, splits.x_val, splits.x_test):
        assert not np.isnan(x["mean area"]).any() and (x["size"] != "").all()
    everything = np.concatenate([splits.x_train, splits.x_val, splits.x_test])
    (fill,) = set(everything["mean area"].tolist()) - set(frame["mean area"].dropna().astype(np.float32).tolist())
    assert fill == pytest.approx(splits.x_train["mean area"].mean(), rel=1e-5), "the training split's mean"
    assert abs(fill - frame["mean area"].mean()) > 0.01, "not the whole table's (654.775)"


def test_a_non_numeric_column_not_listed_as_categorical_is_refused_by_name(cancer, tmp_path):
    cancer.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="column 'size' is not numeric .* list it in data.categorical"):
        load_table(tmp_path / "t.csv", table_config(tmp_path / "t.csv", categorical=()), seed=0)
