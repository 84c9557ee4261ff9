"""Sweep files: every shipped file validates, and each kind of bad input fails early and clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline import cli
from pipeline.config import PrunerConfig, SweepConfigError, load_sweep
from pipeline.hyperparameters import NAMES, CategoricalParam, FixedParam, Hyperparameters, IntParam, base_values

from conftest import SWEEPS, write_sweep


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_file_validates(path: Path):
    config = load_sweep(path)
    assert config.study.n_trials >= 1
    for name in config.searched_names():
        assert not isinstance(config.search_space[name], FixedParam)
    assert set(base_values(config.search_space)) == set(NAMES)


def test_seed_sweep_is_the_reference_model():
    config = load_sweep(SWEEPS / "seed.yaml")
    assert config.searched_names() == []
    assert Hyperparameters.from_dict(base_values(config.search_space)) == Hyperparameters(
        units=128, hidden_layers=1, dropout=0.2, activation="relu", optimizer="adam",
        learning_rate=0.001, epochs=5, batch_size=32, preprocessing="normalize")


def test_search_space_entries_parse_to_typed_objects():
    config = load_sweep(SWEEPS / "fashion_mnist.yaml")
    assert config.search_space["units"] == IntParam(128, 1024, 1, True)
    assert config.study.pruner == PrunerConfig("median", 3, 3)
    assert config.study.trials_per_process == 10
    assert isinstance(config.search_space["activation"], CategoricalParam)
    assert set(config.search_space["preprocessing"].choices) == {"standardize", "normalize"}
    with pytest.raises(Exception):
        config.study.n_trials = 3  # frozen


BAD_INPUTS = {
    "unknown top-level key": ({"trainer": {"x": 1}}, "trainer", "allowed: study, data"),
    "unknown study key": ({"study.trials": 3}, "study.trials", "allowed: name, direction"),
    "unknown search-space param": ({"search_space.width": 3}, "search_space.width", "allowed: units"),
    "wrong type": ({"study.n_trials": "ten"}, "study.n_trials", "must be an integer"),
    "low above high": ({"search_space.units": {"type": "int", "low": 200, "high": 100}},
                       "search_space.units", "low (200) must not be greater than high (100)"),
    "dropout of one": ({"search_space.dropout": {"type": "float", "low": 0.1, "high": 1.0}},
                       "search_space.dropout.high", "allowed: [0.0, 1.0)"),
    "negative fixed dropout": ({"search_space.dropout": -0.1}, "search_space.dropout", "allowed: [0.0, 1.0)"),
    "unknown activation": ({"search_space.activation": {"type": "categorical", "choices": ["relu", "swishy"]}},
                           "search_space.activation.choices", "'swishy' is not allowed; allowed: relu"),
    "unknown optimizer": ({"search_space.optimizer": "adamm"}, "search_space.optimizer",
                          "'adamm' is not allowed; allowed: adam"),
    "wrong direction": ({"study.direction": "minimize"}, "study.direction", "allowed: maximize"),
    "negative trials per process": ({"study.trials_per_process": -1}, "study.trials_per_process",
                                    "must be 0 (never) or more, got -1"),
    "log with zero low": ({"search_space.learning_rate": {"type": "float", "low": 0.0, "high": 0.1, "log": True}},
                          "search_space.learning_rate", "allowed"),
    "range on a categorical": ({"search_space.activation": {"type": "float", "low": 0, "high": 1}},
                               "search_space.activation.type", "allowed: categorical, fixed"),
    "NaN learning rate": ({"search_space.learning_rate": float("nan")}, "search_space.learning_rate",
                          "nan is out of range"),
    "NaN range bound": ({"search_space.dropout": {"type": "float", "low": float("nan"), "high": 0.3}},
                        "search_space.dropout.low", "nan is out of range"),
    "infinite timeout": ({"study.timeout": float("inf")}, "study.timeout", "allowed: a finite number"),
    "huge quoted value": ({"study.sampler": "x" * 100000}, "study.sampler", "is not allowed; allowed: tpe"),
}


def _write_bad(tmp_path: Path, changes: dict) -> Path:
    raw = yaml.safe_load((SWEEPS / "smoke.yaml").read_text())
    for dotted, value in changes.items():
        if "." in dotted:
            section, key = dotted.split(".", 1)
            raw[section][key] = value
        else:
            raw[dotted] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("case", BAD_INPUTS, ids=str)
def test_bad_sweep_file_exits_2_naming_file_key_and_allowed(case, tmp_path, stores, capsys):
    changes, key, allowed = BAD_INPUTS[case]
    path = _write_bad(tmp_path, changes)
    code = cli.main(["run", str(path), "--storage", stores["storage"], "--tracking-uri", stores["tracking_uri"]])
    err = capsys.readouterr().err
    assert code == 2
    assert str(path) in err and key in err and allowed in err, err
    assert err.count("\n") == 1 and len(err) < 1000, "one short message, no traceback"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"], "nothing written to the stores"


def test_missing_sweep_file_exits_2(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert cli.main(["run", str(missing)]) == 2
    assert f"{missing}: no such sweep file" in capsys.readouterr().err


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("study: [unclosed\n")
    with pytest.raises(SweepConfigError, match="broken.yaml: not valid YAML"):
        load_sweep(path)


def test_bad_command_line_override_exits_2(tmp_path, capsys):
    path = write_sweep(tmp_path)
    assert cli.main(["run", str(path), "--n-trials", "0"]) == 2
    assert "--n-trials: must be at least 1" in capsys.readouterr().err


def test_step_and_log_cannot_be_combined(tmp_path):
    path = _write_bad(tmp_path, {"search_space.units": {"type": "int", "low": 16, "high": 64, "step": 8,
                                                        "log": True}})
    with pytest.raises(SweepConfigError, match="search_space.units.step: cannot be combined with log"):
        load_sweep(path)


def test_pruner_accepts_a_name_or_a_mapping(tmp_path):
    assert load_sweep(_write_bad(tmp_path, {"study.pruner": "hyperband"})).study.pruner == PrunerConfig("hyperband")
    with pytest.raises(SweepConfigError, match="study.pruner.startup_trials: must be 0 or more"):
        load_sweep(_write_bad(tmp_path, {"study.pruner": {"type": "median", "startup_trials": -1}}))
    with pytest.raises(SweepConfigError, match="study.pruner: 'asha' is not allowed; allowed: median"):
        load_sweep(_write_bad(tmp_path, {"study.pruner": "asha"}))
    by_fraction = {"study.pruner": {"type": "median", "by": "fraction"}}
    assert load_sweep(_write_bad(tmp_path, by_fraction)).study.pruner == PrunerConfig("median", by="fraction")
    with pytest.raises(SweepConfigError, match="study.pruner.by: 'percent' is not allowed; allowed: epoch, fraction"):
        load_sweep(_write_bad(tmp_path, {"study.pruner": {"type": "median", "by": "percent"}}))
    with pytest.raises(SweepConfigError, match="study.pruner.by: only the median pruner compares by fraction"):
        load_sweep(_write_bad(tmp_path, {"study.pruner": {"type": "hyperband", "by": "fraction"}}))


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    """yaml.safe_load keeps the last of two equal keys: an edit above a forgotten line would silently lose."""
    path = tmp_path / "twice.yaml"
    path.write_text("study:\n  name: a\n  n_trials: 3\ndata:\n  subset: 600\n  subset: 900\n")
    with pytest.raises(SweepConfigError, match=r"twice.yaml: line 6: 'subset' appears twice in one mapping \(first "
                                               r"on line 5\)"):
        load_sweep(path)
    path.write_text("study:\n  name: a\nstudy:\n  name: b\n")
    with pytest.raises(SweepConfigError, match="line 3: 'study' appears twice"):
        load_sweep(path)


def test_a_key_beside_a_merge_still_overrides_it_and_equal_keys_in_two_mappings_are_fine(tmp_path):
    path = tmp_path / "merged.yaml"
    path.write_text("study: &base {name: a, n_trials: 3}\ntracking: {experiment: a}\n"
                    "search_space:\n  units: {type: int, low: 16, high: 64}\n  dropout: {type: float, low: 0.0, "
                    "high: 0.5}\n")
    assert load_sweep(path).study.n_trials == 3
    path.write_text("study:\n  <<: {name: a, n_trials: 3}\n  n_trials: 5\n")
    assert load_sweep(path).study.n_trials == 5


def test_a_bare_name_is_a_shipped_example(tmp_path, monkeypatch):
    """`sweep run smoke` from anywhere; the table example finds its data beside it, not in the working folder."""
    from pipeline import examples

    monkeypatch.chdir(tmp_path)
    assert load_sweep("smoke").path == examples.folder() / "smoke.yaml"
    table = load_sweep("table").data.data_dir
    assert Path(table).is_absolute() and Path(table).is_file() and table.endswith("sweeps/data/wine.csv")
    (tmp_path / "table").mkdir()  # a project's folder of that name is no sweep file: the example is still meant
    assert load_sweep("table").path == examples.folder() / "table.yaml"
    (tmp_path / "smoke").write_text("study: {name: mine}\n")
    assert load_sweep("smoke").study.name == "mine", "a file that is there is that file"
    with pytest.raises(SweepConfigError, match="smoke.yml: no such sweep file"):
        load_sweep("smoke.yml")


def test_sweep_examples_lists_and_copies_them_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["examples"]) == 0
    listed = capsys.readouterr().out
    for path in SWEEPS.glob("*.yaml"):
        assert f"  {path.stem} " in listed
    assert cli.main(["examples", "--out", "sweeps"]) == 0
    shipped = [*SWEEPS.glob("*.yaml"), *SWEEPS.glob("data/*.csv"), *SWEEPS.glob("models/*.py")]
    assert f"Copied {len(shipped)} files to sweeps/" in capsys.readouterr().out
    for path in shipped:
        assert (tmp_path / "sweeps" / path.relative_to(SWEEPS)).read_bytes() == path.read_bytes()
    copied = load_sweep("sweeps/table.yaml")
    assert copied.data.data_dir == "sweeps/data/wine.csv" and Path(copied.data.data_dir).is_file(), "works from here"
