"""A regression study downstream of training: every view and command in the metric's units and direction.

The verdict and the comparison are checked on scripted values; a tiny real regression study on the diabetes
table runs through `sweep run` (with its confirmation), `report`, `confirm`, `compare`, `export` and
`predict`, and one on an .npz of features through a Pareto front of error and latency under a cap on
parameters, predicted from a run.
"""

from __future__ import annotations

import contextlib
import io
import json

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.study import StudyDirection

from pipeline import cli, compare, confirmation, keys, objectives, plots
from pipeline.config import TASK_TEST_METRICS, load_sweep
from pipeline.data import load_splits
from pipeline.study import load_existing_study
from pipeline.tasks import TASKS
from pipeline.verdict import Noise, describe, judge

from conftest import SWEEPS, write_sweep

LEAD = ["best", "trial", "state", "val_rmse", "test_rmse", "test_mae", "test_r2"]


def run_quietly(argv: list[str]) -> str:
    """`sweep ARGV`'s standard output (a module's fixture has no capsys); it must succeed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0, out.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def regressed(tmp_path_factory) -> dict:
    """The shipped regression sweep shrunk to four short trials, its top two confirmed with a second seed."""
    folder = tmp_path_factory.mktemp("regressed")
    path = write_sweep(folder, "regression.yaml", study__n_trials=4, study__confirm={"top_k": 2, "seeds": 2},
                       study__storage=f"journal:///{folder}/optuna.journal",
                       tracking__tracking_uri=f"sqlite:///{folder}/mlflow.db",
                       tracking__registered_model="diabetes-regressor",
                       data__data_dir=str(SWEEPS / "data" / "diabetes.csv"), search_space__epochs=30,
                       search_space__batch_size=16, search_space__hidden_layers=1)
    return {"path": path, "out": run_quietly(["run", str(path), "--no-progress"])}


@pytest.fixture(scope="module")
def test_rows(regressed) -> tuple[pd.DataFrame, np.ndarray]:
    """The study's test split as a table's rows (its feature columns) and their labels."""
    config = load_sweep(regressed["path"])
    splits = load_splits(config.data, config.study.seed)
    return pd.DataFrame({name: splits.x_test[name] for name in splits.x_test.dtype.names}), splits.y_test


@pytest.fixture(scope="module")
def exported(regressed, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("export") / "regressor"
    said = run_quietly(["export", str(regressed["path"]), "--out", str(out)])
    return {"out": out, "said": said, "info": json.loads((out / "metadata.json").read_text())}


def test_the_task_test_metrics_table_matches_the_tasks():
    """config's copy (read where TensorFlow is never imported) says what the task modules say."""
    assert TASK_TEST_METRICS.keys() == TASKS.keys()
    for task, module in TASKS.items():
        assert tuple(TASK_TEST_METRICS[task]) == module.TEST_METRICS
        assert TASK_TEST_METRICS[task] == module.TEST_DIRECTIONS


def test_the_verdict_of_a_minimized_error_says_it_fell_in_the_label_s_units():
    falling = [80.0 - 1.5 * i for i in range(20)]
    verdict = judge(falling, Noise(0.5, "test"), maximize=False, metric="val_rmse")
    assert verdict.best_so_far[-1] == pytest.approx(51.5) and verdict.since_improvement == 0
    assert verdict.text == ("still improving: the best val_rmse fell 15 in the last 10 trials (seed noise ±0.5; "
                            "last real improvement 0 trial(s) ago)")
    assert "best so far: 51.5000 (val_rmse, in the label's units, lower is better)" in describe(verdict)
    flat = judge([60.0, 55.0, 52.0, 50.0] + [50.4] * 20, Noise(1.0, "test"), maximize=False, metric="val_rmse")
    assert flat.since_improvement == 20 and flat.text.startswith(
        "the best val_rmse has not improved by more than the seed noise (±1) in the last 20 trials")
    worse = judge([50.0] + [70.0] * 19, Noise(None, "none"), maximize=False, metric="val_mae")
    assert worse.best_so_far[-1] == 50.0, "a higher error is never the best"
    assert worse.text.startswith("the best val_mae has not improved at all in the last 19 trials")
    figure = plots.best_so_far_figure(verdict, "val_rmse")
    band = figure.axes[0].collections[-1].get_paths()[0].vertices[:, 1]
    assert band.max() > max(verdict.best_so_far), "the noise band lies above the best: its worse side"
    plots.close(figure)


def test_compare_calls_the_lower_error_better():
    def side(name: str, values: tuple[float, ...]) -> compare.Side:
        return compare.Side(name, "val_rmse", "test_rmse", False, 10, 60.0, {}, values, values, True,
                            Noise(1.0, "seeds"))

    low, high = side("low", (50.0, 50.5, 49.5)), side("high", (58.0, 58.5, 57.5))
    assert compare.judgement(high, low).endswith("larger than the noise: low is better (lower val_rmse)")
    assert compare.judgement(low, high).startswith("val_rmse differs by -8.0000 (low - high)")
    assert "within the noise" in compare.judgement(low, side("close", (50.2, 50.0, 50.4)))


@pytest.mark.slow
def test_a_regression_sweep_and_its_confirmation_speak_rmse(regressed, test_rows):
    out = regressed["out"]
    assert "test_accuracy" not in out
    trial_lines = [line for line in out.splitlines() if line.startswith("trial ")]
    assert trial_lines and all(" val_rmse=" in line and " test_rmse=" in line for line in trial_lines), out
    summary = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith("  ") and
               len(line.split()) == 2}
    assert {"val_rmse", "test_rmse", "test_mae", "test_r2"} <= summary.keys(), out
    assert "Confirmation of study 'diabetes-regression' (2 seeds per configuration):" in out
    assert "| rank | trial | seeds | val_rmse mean ± sd | test_rmse mean ± sd | params |" in out

    config = load_sweep(regressed["path"])
    study = load_existing_study(config.study.storage, config.study.name)
    assert study.direction == StudyDirection.MINIMIZE
    confirmed = confirmation.of_study(study, config, config.tracking.tracking_uri)
    assert [c.mean for c in confirmed] == sorted(c.mean for c in confirmed), "the lowest mean error first"
    winner = confirmed[0]
    assert winner.values[winner.best_seed] == min(winner.values), "the seed an export ships has the lowest error"
    assert f"Winner: trial {winner.trial_number}, val_rmse {winner.mean:.4f} ± {winner.std:.4f}, test_rmse " in out
    _, labels = test_rows
    assert all(np.isfinite(winner.tests)) and winner.test_mean < labels.std(), "learned: below the label's spread"
    first = study.trials[0]
    history = mlflow.MlflowClient(config.tracking.tracking_uri).get_metric_history(first.user_attrs[keys.RUN_ID],
                                                                                   "val_rmse")
    assert [first.intermediate_values[epoch] for epoch in sorted(first.intermediate_values)] == pytest.approx(
        [m.value for m in sorted(history, key=lambda m: m.step)]), "the pruner is told val_rmse in the label's units"


@pytest.mark.slow
def test_report_leads_with_the_regression_metrics_lowest_error_first(regressed, capsys, monkeypatch):
    config = load_sweep(regressed["path"])
    study = load_existing_study(config.study.storage, config.study.name)
    capsys.readouterr()
    assert cli.main(["report", str(regressed["path"]), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table.columns[:7]) == LEAD and "test_accuracy" not in table.columns
    ranked = [t.number for t in objectives.candidates(study)]
    assert list(table["trial"]) == ranked and list(table["best"].fillna("")) == ["*"] + [""] * (len(ranked) - 1)
    assert (table["test_mae"] <= table["test_rmse"]).all() and (table["test_r2"] <= 1).all()

    monkeypatch.setenv("COLUMNS", "1000")
    assert cli.main(["report", str(regressed["path"])]) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("best"))
    assert header.split()[:7] == LEAD
    assert "Confirmation (best mean val_rmse first):" in text and "| test_rmse mean ± sd |" in text
    assert "(val_rmse, in the label's units, lower is better)" in text and "verdict: too early to tell" in text


@pytest.mark.slow
def test_confirm_again_retrains_nothing_and_a_study_compares_equal_to_itself(regressed, capsys):
    capsys.readouterr()
    assert cli.main(["confirm", str(regressed["path"]), "--no-progress"]) == 0
    assert "| val_rmse mean ± sd | test_rmse mean ± sd |" in capsys.readouterr().out
    config = load_sweep(regressed["path"])
    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    retrainings = mlflow.search_runs(experiment_names=[config.experiment_name],
                                     filter_string=f"tags.`{keys.ROLE}` = 'confirmation'")
    assert len(retrainings) == 2, "top 2 x 1 more seed, retrained once"
    assert cli.main(["compare", str(regressed["path"]), str(regressed["path"])]) == 0
    said = capsys.readouterr().out
    rows = {line.split()[0]: line for line in said.splitlines() if line.strip()}
    assert "test_rmse" in rows and "test_accuracy" not in said
    assert "val_rmse differs by +0.0000" in said and "within the noise: neither is shown better" in said


@pytest.mark.slow
def test_export_ships_the_confirmed_regressor_with_its_label_and_errors(regressed, exported):
    info, config = exported["info"], load_sweep(regressed["path"])
    assert info["task"] == "regression" and info["label"] == "progression"
    assert "class_names" not in info and "test_accuracy" not in info
    assert {"test_rmse", "test_mae", "test_r2"} <= info.keys()
    assert info["test_rmse"] == pytest.approx(info["trial_test_rmse"], rel=1e-6), "the exact check passed"
    assert info["objective"]["metric"] == "val_rmse"
    confirmed = info["confirmation"]
    assert confirmed["seeds"] == 2 and {"test_rmse_mean", "test_rmse_sd"} <= confirmed.keys()
    study = load_existing_study(config.study.storage, config.study.name)
    winner = confirmation.of_study(study, config, config.tracking.tracking_uri)[0]
    assert confirmed["shipped_seed_run_id"] == winner.run_ids[winner.best_seed] == info["mlflow"]["trial_run_id"]
    assert confirmed["test_rmse_mean"] == pytest.approx(winner.test_mean)
    said = exported["said"]
    assert "progression (one value, in its own units) out" in said and f"test_rmse {info['test_rmse']:.4g}" in said
    assert f"confirmed over 2 seeds: test_rmse {confirmed['test_rmse_mean']:.4f} ± " in said
    version = mlflow.MlflowClient(config.tracking.tracking_uri).get_model_version("diabetes-regressor",
                                                                                  str(info["mlflow"]["version"]))
    assert f"test rmse {info['test_rmse']:.4f}" in version.description


@pytest.mark.slow
def test_predict_answers_in_the_label_s_units_named_after_it(regressed, exported, test_rows, tmp_path, capsys):
    rows, labels = test_rows
    rows.assign(progression=labels).to_csv(tmp_path / "rows.csv", index=False)  # the label column is ignored
    capsys.readouterr()
    assert cli.main(["predict", str(exported["out"]), str(tmp_path / "rows.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(labels) and lines[0].startswith(f"{tmp_path / 'rows.csv'}[0]\tprogression=")
    values = np.array([float(line.split("\tprogression=")[1]) for line in lines])
    rmse = float(np.sqrt(np.mean(np.square(values - labels))))
    assert rmse == pytest.approx(exported["info"]["test_rmse"], rel=1e-4), "the label's units: the export's error"

    uri = "models:/diabetes-regressor@champion"
    assert cli.main(["predict", uri, str(tmp_path / "rows.csv"), "--json", "--tracking-uri",
                     load_sweep(regressed["path"]).tracking.tracking_uri]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert [set(a) for a in answers[:1]] == [{"input", "index", "progression"}]
    np.testing.assert_allclose([a["progression"] for a in answers], values, rtol=1e-5)


@pytest.mark.slow
def test_a_regression_pareto_front_of_error_and_latency_under_a_cap_and_a_run_s_prediction(tmp_path, stores,
                                                                                             capsys):
    """val_rmse and latency both minimized, the parameters capped: two widths, one of them over the cap."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(240, 5)).astype(np.float32)
    y = 500.0 + 30.0 * (x @ rng.normal(size=5)) + rng.normal(scale=3.0, size=240)
    np.savez(tmp_path / "numbers.npz", x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    np.savez(tmp_path / "inputs.npz", x=x[200:])
    path = write_sweep(tmp_path, "regression.yaml", study__n_trials=4, study__storage=stores["storage"],
                       study__objectives=["val_rmse", "latency_ms"], study__pruner="none",
                       study__constraints={"max_params": 150}, tracking__tracking_uri=stores["tracking_uri"],
                       data__dataset="npz", data__data_dir=str(tmp_path / "numbers.npz"), data__label=None,
                       data__categorical=None, data__missing=None, data__test_fraction=None,
                       search_space__epochs=30, search_space__batch_size=16, search_space__learning_rate=0.01,
                       search_space__hidden_layers=1, search_space__units={"type": "categorical", "choices": [4, 48]})
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    study = optuna.load_study(study_name="diabetes-regression", storage=stores["storage"])
    assert study.directions == [StudyDirection.MINIMIZE, StudyDirection.MINIMIZE]
    front = objectives.study_front(study)
    feasible = [t for t in study.trials if t.values and objectives.feasible(t)]
    assert {t.params["units"] for t in study.trials} == {4, 48}, "both widths tried (the seeded sampler's start)"
    assert front and all(t.user_attrs[keys.MEASUREMENTS][keys.PARAMS_COUNT] <= 150 for t in front)
    assert all(not any(o.values[0] < t.values[0] and o.values[1] < t.values[1] for o in feasible)
               for t in front), "no feasible trial has both a lower error and a lower latency than a front one"
    capsys.readouterr()
    assert cli.main(["report", str(path), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert (table["feasible"] == (table["params_count"] <= 150)).all() and not table["feasible"].all()
    assert table.loc[table["best"] == "*", "feasible"].item(), "the best meets the cap"
    assert cli.main(["report", str(path)]) == 0
    assert f"Pareto front (val_rmse, latency_ms): {len(front)} trial(s)" in capsys.readouterr().out
    mlflow.set_tracking_uri(stores["tracking_uri"])
    parent = mlflow.search_runs(experiment_names=["diabetes-regression"], output_format="list",
                                filter_string=f"tags.`{keys.ROLE}` = 'parent'")[0]
    assert "plots/pareto_front.png" in {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id,
                                                                                             "plots")}

    run_id = front[0].user_attrs[keys.RUN_ID]
    assert cli.main(["predict", f"runs:/{run_id}/model", str(tmp_path / "inputs.npz"), "--tracking-uri",
                     stores["tracking_uri"]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 40 and all("\ty=" in line for line in lines)
    values = np.array([float(line.split("\ty=")[1]) for line in lines])
    logged = mlflow.MlflowClient().get_run(run_id).data.metrics[keys.TEST_RMSE]
    assert float(np.sqrt(np.mean(np.square(values - y[200:])))) == pytest.approx(logged, rel=1e-4)
    assert logged < y[200:].std(), "learned: below the label's spread"

