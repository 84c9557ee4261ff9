"""A study's first trials: study.start_with's configurations and study.warm_start's best of another study, run
before the sampler takes over, each once however often the study resumes."""

from __future__ import annotations

import copy
import json

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from pipeline import BadInputError, Sweep, SweepConfigError, keys
from pipeline import stores as store_uris
from pipeline.study import optuna_storage

from conftest import SWEEPS, write_sweep

SPACE = {"units": {"type": "int", "low": 16, "high": 128, "log": True},
         "dropout": {"type": "float", "low": 0.0, "high": 0.4},
         "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
         "epochs": 1, "batch_size": 64}
STARTS = [{"units": 100, "dropout": 0.25, "activation": "tanh"}, {"units": 20, "activation": "relu"}]


def _sweep(name: str, data_dir, stores, n_trials: int, **study) -> dict:
    return {"study": {"name": name, "n_trials": n_trials, "seed": 3, "pruner": "none", **study},
            "data": {"dataset": "idx", "data_dir": str(data_dir), "subset": 400, "test_subset": 200},
            "search_space": copy.deepcopy(SPACE)}


def _trials(stores, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=optuna_storage(stores["storage"]))
    return sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)


@pytest.fixture(scope="module")
def yesterday(tmp_path_factory, data_dir):
    """A finished study to warm-start from: three trials, stores of its own."""
    folder = tmp_path_factory.mktemp("yesterday")
    stores = {"storage": f"journal:///{folder}/optuna.journal", "tracking_uri": f"sqlite:///{folder}/mlflow.db"}
    Sweep.from_dict(_sweep("yesterday", data_dir, stores, 3), **stores).run(progress=False)
    return stores


def test_start_with_runs_its_configurations_first_and_once(data_dir, stores):
    spec = _sweep("started", data_dir, stores, 3, start_with=STARTS)
    Sweep.from_dict(spec, **stores).run(progress=False)
    first, second, third = _trials(stores, "started")
    assert {k: first.params[k] for k in STARTS[0]} == STARTS[0]
    assert {k: second.params[k] for k in STARTS[1]} == STARTS[1]
    assert "dropout" in second.params  # what a configuration leaves out, the sampler chooses
    assert third.state == TrialState.COMPLETE
    Sweep.from_dict(spec, n_trials=4, **stores).run(progress=False)  # resumed: not run again
    trials = _trials(stores, "started")
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sum(t.params["units"] == 100 and t.params["activation"] == "tanh" for t in trials) == 1


def test_a_warm_start_begins_with_the_other_study_s_best(tmp_path, data_dir, stores, yesterday, capfd):
    ranked = sorted((t for t in _trials(yesterday, "yesterday") if t.state == TrialState.COMPLETE),
                    key=lambda t: -t.value)
    warm = {"study": "yesterday", "storage": yesterday["storage"], "top_k": 2}
    outcome = Sweep.from_dict(_sweep("today", data_dir, stores, 3, warm_start=warm), **stores).run(progress=False)
    trials = _trials(stores, "today")
    for taken, source in zip(trials, ranked[:2]):
        assert taken.params == source.params
    assert "the first 2 trial(s) are the best of study 'yesterday'" in capfd.readouterr().err
    study = optuna.load_study(study_name="today", storage=optuna_storage(stores["storage"]))
    recorded = study.user_attrs[keys.WARM_START]
    assert [t["number"] for t in recorded["trials"]] == [t.number for t in ranked[:2]]
    client = mlflow.MlflowClient(store_uris.resolve_uri(stores["tracking_uri"]))
    folder = client.download_artifacts(outcome.parent_run_id, keys.SWEEP_DIR, str(tmp_path / "got"))
    logged = json.loads((tmp_path / "got" / "sweep" / "warm_start.json").read_text())
    assert logged["study"] == "yesterday" and logged["trials"] == recorded["trials"], folder


def test_a_warm_start_the_space_cannot_take_is_refused_naming_the_parameter(data_dir, stores, yesterday):
    spec = _sweep("narrow", data_dir, stores, 2, warm_start={"study": "yesterday", "storage": yesterday["storage"]})
    spec["search_space"]["activation"] = {"type": "categorical", "choices": ["gelu", "silu"]}
    with pytest.raises(SweepConfigError, match=r"study.warm_start: trial \d+ of study 'yesterday' ran with "
                                               r"activation='(relu|tanh)', which is not one of the choices gelu"):
        Sweep.from_dict(spec, **stores).run(progress=False)
    assert not store_uris.local_path(store_uris.resolve_uri(stores["storage"])).exists()  # nothing written


def test_a_warm_start_from_a_missing_study_names_the_studies_there(data_dir, stores, yesterday):
    spec = _sweep("lost", data_dir, stores, 1, warm_start={"study": "yesteryear", "storage": yesterday["storage"]})
    with pytest.raises(BadInputError, match="study.warm_start: .*yesteryear.*yesterday"):
        Sweep.from_dict(spec, **stores).run(progress=False)


@pytest.mark.parametrize("change, message", [
    ({"units": 4096}, r"study.start_with\[1\].units: 4096 is outside the range \[16, 128\]"),
    ({"unitz": 32}, r"study.start_with\[1\].unitz: is not in search_space; allowed: units, dropout"),
    ({"activation": "gelu"}, r"study.start_with\[1\].activation: 'gelu' is not one of the choices relu, tanh"),
    ({"batch_size": 32}, r"study.start_with\[1\].batch_size: 32 is not the fixed 64"),
    ({"units": 32.5}, r"study.start_with\[1\].units: 32.5 is not an integer"),
    ({"activation": True}, r"study.start_with\[1\].activation: True is not one of the choices"),
])
def test_a_start_with_value_the_space_cannot_give_is_refused_by_its_key(data_dir, stores, change, message):
    spec = _sweep("bad", data_dir, stores, 1, start_with=[STARTS[0], change])
    with pytest.raises(SweepConfigError, match=message):
        Sweep.from_dict(spec)


@pytest.mark.parametrize("warm, message", [
    ({"study": "a", "top_k": 0}, "study.warm_start.top_k: must be at least 1"),
    ({"stdy": "a"}, "study.warm_start.stdy: unknown key; allowed: study, storage, top_k"),
    ({"top_k": 2}, "study.warm_start.study"),
    ("a", "study.warm_start: must be a mapping"),
])
def test_a_bad_warm_start_is_refused_by_its_key(tmp_path, warm, message):
    spec = {"study": {"name": "x", "warm_start": warm}, "search_space": copy.deepcopy(SPACE)}
    with pytest.raises(SweepConfigError, match=message):
        Sweep.from_dict(spec)


def test_start_with_is_a_list_of_mappings(tmp_path):
    path = write_sweep(tmp_path, study__start_with={"units": 32})
    with pytest.raises(SweepConfigError, match="study.start_with: must be a list of configurations"):
        Sweep.from_file(path)


def test_the_mnist_sweep_can_start_from_the_default_sweep_s_configurations():
    """sweeps/mnist.yaml searches the default sweep's space, so a Fashion-MNIST study of the default sweep can
    warm-start it: each of the default's first configurations is one its space can give (bench row w)."""
    default = yaml.safe_load((SWEEPS / "fashion_mnist.yaml").read_text())
    mnist = yaml.safe_load((SWEEPS / "mnist.yaml").read_text())
    mnist["study"]["start_with"] = default["study"]["start_with"]
    assert Sweep.from_dict(mnist).config.study.start_with == tuple(default["study"]["start_with"])
    assert set(mnist["search_space"]) == set(default["search_space"])


def test_a_warm_start_is_decided_once_and_a_resume_needs_no_source(tmp_path, data_dir, stores, yesterday):
    """Resumed, a warm-started study keeps the configurations it took, whatever became of its source since: a new
    best there is not queued in the middle of this study, and a source that is gone is not needed."""
    source = tmp_path / "source.journal"
    source.write_bytes(store_uris.local_path(store_uris.resolve_uri(yesterday["storage"])).read_bytes())
    warm = {"study": "yesterday", "storage": f"journal:///{source}", "top_k": 1}
    spec = _sweep("decided", data_dir, stores, 1, warm_start=warm)
    Sweep.from_dict(spec, **stores).run(progress=False)
    study = optuna.load_study(study_name="decided", storage=optuna_storage(stores["storage"]))
    recorded = study.user_attrs[keys.WARM_START]
    other = optuna.load_study(study_name="yesterday", storage=optuna_storage(f"journal:///{source}"))
    best = max((t for t in other.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    other.add_trial(optuna.trial.create_trial(params={**best.params, "units": 17}, distributions=best.distributions,
                                              value=best.value + 1,
                                              user_attrs={k: v for k, v in best.user_attrs.items() if k != keys.PARAMS}))
    Sweep.from_dict(spec, n_trials=2, **stores).run(progress=False)
    source.unlink()
    Sweep.from_dict(spec, n_trials=3, **stores).run(progress=False)
    trials = _trials(stores, "decided")
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.params["units"] != 17 for t in trials)
    study = optuna.load_study(study_name="decided", storage=optuna_storage(stores["storage"]))
    assert study.user_attrs[keys.WARM_START] == recorded
