"""A table's model served as pandas reads the table: integers, booleans, integer-coded categories, gaps.

One real sweep (one trial) runs on a small table with an int64 column, a boolean one with gaps, a float one
with gaps and an integer-coded categorical with gaps (`missing: impute`). Its logged model is then fed
`pd.read_csv` of the table through MLflow's pyfunc, `sweep predict` and a real `mlflow models serve`; rows
it cannot take are refused by column. A model whose study refused gaps still refuses them, by column.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from pipeline import cli
from pipeline.data.records import InputSpec
from pipeline.hyperparameters import Hyperparameters
from pipeline.model import build_model
from pipeline.preprocessing import fit_stats
from pipeline.processes import free_port, start_group, stop_group, wait_for_http
from pipeline.tracking import models

from conftest import write_sweep


def write_table(path) -> pd.DataFrame:
    """240 rows whose class follows `x` and the coded `region`; gaps in three columns."""
    rng = np.random.default_rng(0)
    n = 240
    frame = pd.DataFrame({"year": rng.integers(2000, 2010, n), "flag": rng.integers(0, 2, n).astype(bool),
                          "x": rng.normal(size=n).round(3), "region": rng.integers(1, 4, n)})
    frame["label"] = np.where(frame["x"] + (frame["region"] == 2) > 0.4, "high", "low")
    frame = frame.astype({"flag": object, "region": float})
    frame.loc[:9, "x"] = np.nan
    frame.loc[10:19, "region"] = np.nan
    frame.loc[20:24, "flag"] = np.nan
    frame.to_csv(path, index=False)
    return pd.read_csv(path)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    """The table, its sweep file and the one trial's logged model, in a tracking store of its own."""
    folder = tmp_path_factory.mktemp("served")
    rows = write_table(folder / "table.csv")
    tracking_uri = f"sqlite:///{folder}/mlflow.db"
    path = write_sweep(folder, "table.yaml", study__n_trials=1, study__storage=f"sqlite:///{folder}/optuna.db",
                       tracking__tracking_uri=tracking_uri, data__data_dir=str(folder / "table.csv"),
                       data__label="label", data__categorical=["region"], data__missing="impute",
                       search_space__epochs=10, search_space__batch_size=16)
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    mlflow.set_tracking_uri(tracking_uri)
    (run_id,) = mlflow.search_runs(experiment_names=["wine-table"],
                                   filter_string="tags.`sweep.role` = 'trial'")["run_id"]
    return {"folder": folder, "rows": rows, "tracking_uri": tracking_uri, "uri": f"runs:/{run_id}/model",
            "sweep": path}


def test_the_pyfunc_takes_the_table_as_pandas_reads_it(served, capfd):
    rows = served["rows"]
    assert {str(t) for t in rows.dtypes[["year", "flag", "x", "region"]]} == {"int64", "object", "float64"}
    mlflow.set_tracking_uri(served["tracking_uri"])
    model = mlflow.pyfunc.load_model(served["uri"])
    capfd.readouterr()
    answer = model.predict(rows)
    assert capfd.readouterr().out == "", "no progress bar on a served prediction"
    assert list(answer.columns) == ["high", "low"] and len(answer) == len(rows)
    assert np.isfinite(answer.to_numpy()).all() and np.allclose(answer.sum(axis=1), 1.0, atol=1e-5)
    assert np.mean(answer.idxmax(axis=1) == rows["label"]) > 0.7, "learned, gaps filled inside the model"

    complete = rows.iloc[25:].astype({"region": int, "flag": bool})  # as read without gaps: int64 and bool
    assert str(complete["region"].dtype) == "int64" and str(complete["flag"].dtype) == "bool"
    np.testing.assert_allclose(model.predict(complete).to_numpy(), answer.iloc[25:].to_numpy(), rtol=1e-6)
    as_text = rows.astype({"region": "string"}).assign(region=lambda f: f["region"].str.removesuffix(".0"))
    np.testing.assert_allclose(model.predict(as_text).to_numpy(), answer.to_numpy(), rtol=1e-6)

    empty = model.predict(rows.head(0))
    assert list(empty.columns) == ["high", "low"] and len(empty) == 0
    for bad, message in ((np.inf, "'x' has 1 value(s) that are infinite or beyond float32"),
                         (1e39, "'x' has 1 value(s) that are infinite or beyond float32"),
                         ("tall", "'x' has 1 value(s) that are not numbers (e.g. 'tall')")):
        broken = rows.head(3).astype({"x": object})
        broken.loc[1, "x"] = bad
        with pytest.raises(MlflowException, match=message.replace("(", r"\(").replace(")", r"\)")):
            model.predict(broken)
    for when in (pd.Timestamp("2020-01-01"), pd.Timedelta(days=3)):  # pandas would make nanosecond counts of them
        with pytest.raises(MlflowException, match="'x' holds dates or times, not numbers"):
            model.predict(rows.head(3).assign(x=when))


def test_sweep_predict_takes_the_table_with_gaps_and_refuses_what_overflows(served, capsys):
    folder, rows = served["folder"], served["rows"]
    rows.head(30).drop(columns="label").to_csv(folder / "rows.csv", index=False)  # gaps in x, region, flag
    capsys.readouterr()
    argv = ["predict", served["uri"], str(folder / "rows.csv"), "--tracking-uri", served["tracking_uri"], "--json"]
    assert cli.main(argv) == 0
    answers = json.loads(capsys.readouterr().out)
    assert len(answers) == 30 and all(0.5 <= a["probability"] <= 1 for a in answers)
    rows.head(3).assign(year=[2001, 1e39, 2003]).to_csv(folder / "huge.csv", index=False)
    assert cli.main([*argv[:2], str(folder / "huge.csv"), *argv[3:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "huge.csv: column 'year' has 1 value(s) that are infinite or beyond" in err


def test_a_model_whose_study_refused_gaps_refuses_them_by_column(tmp_path):
    rows = pd.DataFrame({"x": [0.1, 0.5, 0.9, 0.3], "kind": ["a", "b", "a", "b"]})
    x = np.array(list(zip(rows["x"], rows["kind"])), dtype=[("x", "f4"), ("kind", "U1")])
    model = build_model(Hyperparameters(units=4), InputSpec.of(x), 2, fit_stats(x))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    with mlflow.start_run(experiment_id=mlflow.create_experiment("refused-gaps")):
        served = mlflow.pyfunc.load_model(models.log_model(model, x, ("no", "yes")))
    assert len(served.predict(rows)) == 4
    for column, gap in (("x", None), ("kind", np.nan), ("kind", "")):
        gappy = rows.astype(object)
        gappy.loc[2, column] = gap
        with pytest.raises(MlflowException, match=f"'{column}' has 1 missing value.* takes complete rows"):
            served.predict(gappy)


def test_an_array_model_is_served_quietly_and_answers_no_inputs_with_no_rows(tmp_path, capfd):
    features = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    keras.utils.set_random_seed(1)  # weights under which inputs of 3e38 overflow to NaN (others give 1/3 each)
    model = build_model(Hyperparameters(units=4, preprocessing="standardize"), InputSpec((6,), "float32"), 3,
                        fit_stats(features))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    with mlflow.start_run(experiment_id=mlflow.create_experiment("features")):
        uri = models.log_model(model, features[:2], ("a", "b", "c"))
    served = mlflow.pyfunc.load_model(uri)
    capfd.readouterr()
    probabilities = served.predict(features)
    assert capfd.readouterr().out == "", "no progress bar on a served prediction"
    np.testing.assert_allclose(probabilities, model.predict(features, verbose=0), rtol=1e-6)
    assert served.predict(features[:0]).shape == (0, 3)
    for bad in (np.nan, np.inf):
        with pytest.raises(MlflowException, match="1 input value.s. are NaN, infinite or beyond float32's range"):
            served.predict(np.where(np.arange(6) == 2, np.float32(bad), features[:1]))
    with pytest.raises(MlflowException, match="the model's probabilities for 1 input.s. are NaN"):
        served.predict(np.full((1, 6), 3e38, np.float32))  # finite, but the model overflows on it
    assert models.load_model(uri).count_params() == model.count_params(), "sweep predict's loader takes it too"


def test_mlflow_models_serve_answers_rows_with_ints_bools_and_gaps(served, tmp_path):
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": served["tracking_uri"]}
    server = start_group(["mlflow", "models", "serve", "-m", served["uri"], "--env-manager", "local",
                          "--host", "127.0.0.1", "--port", str(port)],
                         env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "w"))

    def post(payload) -> tuple[int, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    columns = ["year", "flag", "x", "region"]
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server)
        status, body = post({"dataframe_split": {"columns": columns, "data": [
            [2004, True, 0.7, 2], [2001, False, -1.2, 1], [2007, None, None, None]]}})
        assert status == 200, body
        predictions = body["predictions"]
        assert len(predictions) == 3 and all(abs(p["high"] + p["low"] - 1) < 1e-5 for p in predictions)
        assert predictions[0]["high"] > predictions[1]["high"]
        status, body = post({"dataframe_split": {"columns": columns, "data": []}})
        assert (status, body["predictions"]) == (200, [])
        status, body = post({"dataframe_split": {"columns": columns, "data": [[2004, True, 1e39, 2]]}})
        assert status == 400 and "column 'x' has 1 value(s) that are infinite or beyond" in body["message"]
        assert "Traceback" not in body["message"]
        status, body = post({"inputs": None})
        assert status == 400 and "Expected input to be DataFrame" in body["message"]
    finally:
        stop_group(server)
