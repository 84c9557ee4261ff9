"""Deployment-aware search: every trial's model measured, constraints, multi-objective studies, export limits.

The Pareto logic and constraint selection are checked on scripted trials; the measurement on tiny real
models (no timing thresholds: timings belong in docs/benchmarks.md); constraints and a multi-objective
study on tiny real sweeps, trial by trial in MLflow.
"""

from __future__ import annotations

import json
import random

import mlflow
import numpy as np
import optuna
import pytest

from pipeline import cli, keys, objectives
from pipeline.config import Constraints
from pipeline.data.records import InputSpec
from pipeline.hyperparameters import Hyperparameters
from pipeline.measure import measure
from pipeline.model import build_model
from pipeline.preprocessing import fit_stats
from pipeline.study import best_complete_trial

from conftest import write_sweep


def test_no_trial_on_the_pareto_front_is_dominated_and_every_other_one_is():
    rng = random.Random(3)
    points = [(n, (rng.random(), rng.random(), rng.random())) for n in range(60)] + [(60, (0.5, 0.5, 0.5)),
                                                                                       (61, (0.5, 0.5, 0.5))]
    maximize = (True, False, False)
    front = set(objectives.pareto_front(points, maximize))
    values = dict(points)

    def dominates(a, b):
        better = [x >= y if up else x <= y for x, y, up in zip(a, b, maximize)]
        return all(better) and a != b

    assert front and all(not dominates(values[m], values[n]) for n in front for m in values)
    assert all(any(dominates(values[m], values[n]) for m in front) for n in values if n not in front)


def scripted(values_and_measurements, constraints: Constraints) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for value, measured in values_and_measurements:
        study.add_trial(optuna.trial.create_trial(value=value, constraints=constraints.excess(measured), user_attrs={
            keys.PARAMS: {}, keys.RUN_ID: "r", keys.MEASUREMENTS: measured}))
    return study


def costs(params: int, latency: float, mb: float = 0.1) -> dict:
    return {keys.PARAMS_COUNT: params, keys.LATENCY_B1: latency, keys.MODEL_MB: mb}


def test_an_infeasible_trial_never_wins_and_export_limits_pick_the_best_that_meets_them():
    limits = Constraints(max_params=50_000)
    study = scripted([(0.91, costs(90_000, 0.4)), (0.88, costs(40_000, 0.3)), (0.86, costs(20_000, 0.2))], limits)
    assert best_complete_trial(study).number == 1, "the most accurate trial breaks max_params"
    assert [t.number for t in objectives.candidates(study)] == [1, 2]
    tight = Constraints(max_latency_ms=0.25)
    assert [objectives.within(t, tight) for t in study.trials] == [False, False, True]
    none = Constraints(max_params=10_000, max_latency_ms=0.1)
    assert objectives.closest(study.trials, none).number == 2, "misses the limits by least"


@pytest.mark.parametrize("inputs", ["images", "table"])
def test_the_measurement_of_a_tiny_model(inputs):
    if inputs == "images":
        x = np.random.default_rng(0).integers(0, 256, (20, 8, 8), dtype=np.uint8)
    else:
        x = np.zeros(20, dtype=[("a", "f4"), ("b", "U3")])
        x["a"], x["b"] = np.arange(20), ["x", "y"] * 10
    model = build_model(Hyperparameters(units=8), InputSpec.of(x), 3, fit_stats(x))
    measured = measure(model, x)
    assert measured[keys.PARAMS_COUNT] == model.count_params()
    assert measured[keys.MODEL_BYTES] > 4 * model.count_params() and measured[keys.MODEL_MB] == pytest.approx(
        measured[keys.MODEL_BYTES] / 1e6)
    assert measured[keys.LATENCY_B1] > 0 and measured[keys.LATENCY_B256] > 0 and measured[keys.LATENCY_THREADS] >= 1


def trial_runs(tracking_uri: str, experiment: str) -> list:
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.search_runs(experiment_names=[experiment], output_format="list",
                              filter_string=f"tags.`{keys.ROLE}` = 'trial'")


@pytest.mark.slow
def test_a_constrained_sweep_records_every_measurement_and_never_exports_an_infeasible_model(
        tmp_path, data_dir, stores, capsys):
    settings = dict(data__subset=600, data__test_subset=300, data__data_dir=str(data_dir),
                    study__storage=stores["storage"], tracking__tracking_uri=stores["tracking_uri"],
                    study__constraints={"max_params": 50_000}, search_space__epochs=1)
    large = write_sweep(tmp_path, study__n_trials=2, search_space__units=256, **settings)  # 200k params
    assert cli.main(["run", str(large), "--no-progress"]) == 0
    assert "None of the 2 COMPLETE trial(s) meets the study's constraints" in capsys.readouterr().out
    path = write_sweep(tmp_path, study__n_trials=4, search_space__units=16, **settings)  # the same study, resumed
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    runs = trial_runs(stores["tracking_uri"], "fashion-mnist-smoke")
    feasible = {}
    for run in runs:
        metrics = run.data.metrics
        for key in (keys.PARAMS_COUNT, keys.MODEL_BYTES, keys.LATENCY_B1, keys.LATENCY_B256, keys.LATENCY_THREADS):
            assert metrics[key] > 0, key
        feasible[run.info.run_id] = run.data.tags[keys.FEASIBLE] == "true"
        assert feasible[run.info.run_id] == (metrics[keys.PARAMS_COUNT] <= 50_000)
    assert sorted(feasible.values()) == [False, False, True, True]

    out = tmp_path / "export"
    assert cli.main(["export", str(path), "--out", str(out)]) == 0
    info = json.loads((out / "metadata.json").read_text())
    assert feasible[info["mlflow"]["trial_run_id"]] and info["params"]["units"] == 16

    capsys.readouterr()
    assert cli.main(["export", str(path), "--out", str(tmp_path / "none"), "--max-params", "100"]) == 2
    err = capsys.readouterr().err
    assert "meets params_count <= 100; the closest is trial" in err and "params" in err
    assert not (tmp_path / "none").exists()
    assert cli.main(["report", str(path)]) == 0
    assert "feasible" in capsys.readouterr().out


@pytest.mark.slow
def test_a_multi_objective_sweep_draws_and_lists_its_pareto_front(tmp_path, data_dir, stores, capsys):
    path = write_sweep(tmp_path, study__n_trials=3, data__subset=600, data__test_subset=300,
                       data__data_dir=str(data_dir), study__storage=stores["storage"],
                       tracking__tracking_uri=stores["tracking_uri"],
                       study__objectives=["val_accuracy", "params_count"], search_space__epochs=1)
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    study = optuna.load_study(study_name="fashion-mnist-smoke", storage=stores["storage"])
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    front = objectives.study_front(study)
    points = [(t.number, t.values) for t in study.trials]
    assert {t.number for t in front} == set(objectives.pareto_front(points, [True, False]))
    for trial in study.trials:
        assert trial.values[1] == trial.user_attrs[keys.MEASUREMENTS][keys.PARAMS_COUNT]

    client = mlflow.MlflowClient(stores["tracking_uri"])
    parent = mlflow.search_runs(experiment_names=["fashion-mnist-smoke"], output_format="list",
                                filter_string=f"tags.`{keys.ROLE}` = 'parent'")[0]
    assert "plots/pareto_front.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    capsys.readouterr()
    assert cli.main(["report", str(path)]) == 0
    assert f"Pareto front (val_accuracy, params_count): {len(front)} trial(s)" in capsys.readouterr().out
    smallest = min(study.trials, key=lambda t: t.values[1])
    limit = str(int(smallest.values[1]))
    assert cli.main(["export", str(path), "--out", str(tmp_path / "small"), "--max-params", limit]) == 0
    info = json.loads((tmp_path / "small" / "metadata.json").read_text())
    chosen = next(t for t in study.trials if t.user_attrs[keys.RUN_ID] == info["mlflow"]["trial_run_id"])
    assert chosen.values[1] <= smallest.values[1]
