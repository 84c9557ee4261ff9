"""Trusting the winner: confirmation with more seeds, its resumption, the verdict, and `sweep compare`.

The selection and the verdict are checked on scripted values; the queue on a real Optuna study whose
trials are scripted; and a real confirmation on a tiny sweep, run by run in MLflow.
"""

from __future__ import annotations

import json
import math
import socket

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from pipeline import cli, confirmation, keys
from pipeline.config import load_sweep
from pipeline.study import fail_dead_trials
from pipeline.verdict import Noise, judge, noise_from_neighbours, noise_from_seeds

from conftest import write_sweep


def confirmed(number: int, values: tuple[float, ...]) -> confirmation.Confirmed:
    return confirmation.Confirmed(number, {"units": number}, values, values, tuple(f"run{number}-{i}"
                                                                                   for i in range(len(values))))


def test_the_best_mean_beats_a_lucky_single_run():
    lucky = confirmed(0, (0.905, 0.861, 0.859))  # the search's best trial, then two ordinary seeds
    steady = confirmed(1, (0.884, 0.882, 0.886))
    ranked = confirmation.rank([lucky, steady])
    assert ranked[0] is steady and ranked[0].mean == pytest.approx(0.884)
    assert lucky.best_seed == 0 and steady.best_seed == 2, "export ships the seed that validated best"
    assert confirmation.rank([lucky, steady], maximize=False)[0] is lucky, "a loss is minimized"
    table = confirmation.table(ranked, "val_accuracy")
    assert table.splitlines()[2].startswith("| 1 | 1 | 3 | 0.8840 ± 0.0020 |")


def scripted_study(tmp_path, values: list[float]) -> tuple[optuna.Study, object]:
    """A journal study of COMPLETE trials with the attributes a real sweep gives them."""
    config = load_sweep(write_sweep(tmp_path, study__storage=f"journal:///{tmp_path}/optuna.journal"))
    study = optuna.create_study(study_name=config.study.name, direction="maximize",
                                storage=optuna.storages.JournalStorage(
                                    optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))))
    for number, value in enumerate(values):
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={
            keys.PARAMS: {"units": 10 + number}, keys.RUN_ID: f"run-{number}"}))
    return study, config


def test_an_interrupted_confirmation_resumes_without_retraining_twice(tmp_path):
    study, config = scripted_study(tmp_path, [0.80, 0.85, 0.83, 0.70])
    plan = confirmation.plan(study, config, top_k=2, seeds=3)
    assert [(r.trial_number, r.repeat) for r in plan] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert len({r.seed for r in plan}) == 4 and all(r.seed != config.study.seed + r.trial_number for r in plan)
    queue = confirmation.open_confirmation(config)
    assert confirmation.enqueue_missing(queue, plan) == 4
    assert confirmation.enqueue_missing(queue, plan) == 0, "queued once"
    first = queue.ask()  # one retraining finishes ...
    queue.tell(first, 0.84)
    second = queue.ask()  # ... and one's process dies mid-way
    second.set_user_attr(keys.HOST, socket.gethostname())
    second.set_user_attr(keys.PID, 2**22 + 1)  # above Linux's pid_max: never alive
    assert fail_dead_trials(queue) == [second.number]
    assert confirmation.enqueue_missing(queue, plan) == 1, "only the dead one is queued again"
    while not confirmation.queue_empty(queue):
        trial = queue.ask()
        queue.tell(trial, 0.8)
    done = [confirmation._key(t.user_attrs) for t in queue.get_trials(states=(TrialState.COMPLETE,))]
    assert sorted(done) == [(1, 1), (1, 2), (2, 1), (2, 2)], "each retraining completed exactly once"
    results = confirmation.results(study, queue, lambda run_id: 0.5)
    assert [c.trial_number for c in results] == [1, 2] and all(len(c.values) == 3 for c in results)


def test_confirming_more_configurations_than_completed_is_refused(tmp_path):
    study, config = scripted_study(tmp_path, [0.8, 0.9])
    with pytest.raises(Exception, match=r"has 2 COMPLETE trial\(s\); cannot confirm the top 3"):
        confirmation.plan(study, config, top_k=3, seeds=2)


def test_the_verdict_on_improving_flat_and_noisy_histories():
    improving = [0.80 + 0.004 * i for i in range(20)]
    verdict = judge(improving, Noise(0.002, "test"))
    assert verdict.text.startswith("still improving: the best rose 4.00 points in the last 10 trials")
    flat = [0.85, 0.86, 0.87, 0.88] + [0.875] * 20
    verdict = judge(flat, Noise(0.0025, "test"))
    assert verdict.since_improvement == 20
    assert verdict.text == ("the best has not improved by more than the seed noise (±0.25 points) in the last 20 "
                            "trials: more trials of this space are unlikely to help")
    noisy = [0.85, 0.86, 0.87, 0.88] + [0.88 + (0.004 if i % 3 == 0 else -0.01) for i in range(18)]
    assert judge(noisy, Noise(0.005, "test")).since_improvement == 18, "rises within the noise do not count"
    assert judge(noisy, Noise(0.001, "test")).since_improvement == 17, "with less noise the rise to 0.884 counts"
    assert judge([0.8, None, 0.81], Noise(None, "none")).text.startswith("too early to tell")


def test_the_noise_floor_from_seeds_and_from_near_identical_configurations():
    assert noise_from_seeds([(0.86, 0.88), (0.80, 0.80, 0.83)], "s").sd == pytest.approx(
        math.sqrt((0.0002 + 0.0006) / 3))
    pairs = [({"units": 100, "activation": "relu"}, 0.85), ({"units": 105, "activation": "relu"}, 0.87),
             ({"units": 300, "activation": "relu"}, 0.80), ({"units": 100, "activation": "tanh"}, 0.70)]
    noise = noise_from_neighbours(pairs)
    assert noise.sd == pytest.approx(0.02 / math.sqrt(2)) and "1 pair(s)" in noise.source
    assert noise_from_neighbours(pairs[2:]).sd is None


@pytest.mark.slow
def test_a_real_confirmation_is_logged_run_by_run_and_chooses_the_export(tmp_path, data_dir, stores, capsys):
    path = write_sweep(tmp_path, study__n_trials=3, data__subset=600, data__test_subset=300,
                       data__data_dir=str(data_dir), study__storage=stores["storage"],
                       tracking__tracking_uri=stores["tracking_uri"], study__confirm={"top_k": 2, "seeds": 2})
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    assert "Confirmation of study 'fashion-mnist-smoke' (2 seeds per configuration)" in capsys.readouterr().out

    mlflow.set_tracking_uri(stores["tracking_uri"])
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(experiment_names=["fashion-mnist-smoke"], output_format="list")
    parent = next(r for r in runs if r.data.tags[keys.ROLE] == "parent")
    trials = {r.data.tags[keys.TRIAL]: r for r in runs if r.data.tags[keys.ROLE] == "trial"}
    retrainings = [r for r in runs if r.data.tags[keys.ROLE] == "confirmation"]
    assert len(retrainings) == 2
    for run in retrainings:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id and run.info.status == "FINISHED"
        assert tags[keys.SOURCE_RUN] == trials[tags[keys.TRIAL]].info.run_id, "linked to its trial"
        assert tags[keys.REPEAT_TAG] == "1" and int(tags[keys.SEED_TAG]) > 100_000
        assert run.data.params == trials[tags[keys.TRIAL]].data.params, "the same configuration"
        assert run.data.metrics[keys.TEST_ACCURACY] > 0.3, "above chance (0.1)"
        epochs = int(run.data.params["epochs"])
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == epochs, "full curves, no pruning"
        assert mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model") is not None
    artifacts = {a.path for folder in ("confirmation", "verdict", "plots")
                 for a in client.list_artifacts(parent.info.run_id, folder)}
    assert {"confirmation/confirmation.md", "verdict/verdict.txt", "plots/best_so_far.png"} <= artifacts

    assert cli.main(["confirm", str(path), "--no-progress"]) == 0, "already confirmed: nothing retrained"
    assert len(mlflow.search_runs(experiment_names=["fashion-mnist-smoke"],
                                  filter_string=f"tags.`{keys.ROLE}` = 'confirmation'")) == 2

    assert cli.main(["export", str(path), "--out", str(tmp_path / "export")]) == 0
    info = json.loads((tmp_path / "export" / "metadata.json").read_text())
    shipped = info["confirmation"]["shipped_seed_run_id"]
    assert info["confirmation"]["seeds"] == 2 and shipped == info["mlflow"]["trial_run_id"]
    assert info["test_accuracy"] == pytest.approx(client.get_run(shipped).data.metrics[keys.TEST_ACCURACY])
    version = client.get_model_version("fashion-mnist-smoke", str(info["mlflow"]["version"]))
    assert f"Confirmed over 2 seeds: test accuracy {info['confirmation']['test_accuracy_mean']:.4f}" in \
        version.description

    capsys.readouterr()
    assert cli.main(["report", str(path)]) == 0
    report = capsys.readouterr().out
    assert "Confirmation (best mean val_accuracy first)" in report and "verdict: " in report
    assert cli.main(["compare", str(path), str(path)]) == 0
    assert "within the noise: neither is shown better" in capsys.readouterr().out
