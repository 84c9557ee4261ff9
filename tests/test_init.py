"""`sweep init DATA`: each source inferred right, warnings, --out/--force, refusals like `sweep run`'s, and the
written file running a trial unchanged.

The data is scikit-learn's bundled sets written out as the user would have them: digits as a folder of 8x8
PNGs and as an .npz, wine and diabetes as CSV tables; Fashion-MNIST's IDX folder for the idx source.
"""

from __future__ import annotations

import re

import numpy as np
import optuna
import pandas as pd
import pytest
from PIL import Image

from pipeline import cli, scaffold
from pipeline.config import DataConfig, load_sweep
from pipeline.data import load_splits
from pipeline.errors import BadInputError, DataError
from pipeline.hyperparameters import CategoricalParam
from pipeline.study import optuna_storage


def init(data, out, **options):
    """scaffold.init_sweep as the API calls it, untimed unless asked."""
    return scaffold.init_sweep(data, out, options.get("label"), options.get("force", False),
                               options.get("timing", False))


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    keep = np.concatenate([np.flatnonzero(bunch.target == digit)[:25] for digit in range(10)])
    return (bunch.images[keep] * 15).astype(np.uint8), bunch.target[keep]


@pytest.fixture
def digit_folder(tmp_path, digits):
    """250 8x8 grayscale PNGs, one folder per digit."""
    images, labels = digits
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "digits" / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index}.png")
    return tmp_path / "digits"


@pytest.fixture
def wine(tmp_path):
    """The wine table with its class column first, named `target`."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    path = tmp_path / "wine.csv"
    frame[["target", *frame.columns.drop("target")]].to_csv(path, index=False)
    return path


@pytest.fixture
def diabetes(tmp_path):
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    path = tmp_path / "diabetes.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def shops(tmp_path):
    """2,400 rows of a generated 3-class problem, with a text column and the class in the middle."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=2400, n_features=6, n_informative=4, n_classes=3, random_state=0)
    frame = pd.DataFrame(x[:, :3], columns=["a", "b", "c"])
    frame["class"] = np.array(["low", "mid", "high"])[y]
    frame[["d", "e", "f"]] = x[:, 3:]
    frame["colour"] = np.random.default_rng(0).choice(["red", "green", "blue"], len(frame))
    path = tmp_path / "shops.parquet"
    frame.to_parquet(path)
    return path


def batch_choices(config) -> list[int]:
    spec = config.search_space["batch_size"]
    return list(spec.choices) if isinstance(spec, CategoricalParam) else [spec.value]


def test_a_table_label_found_by_name_and_its_classes_counted(wine, tmp_path):
    frame = pd.read_csv(wine)
    frame["region"] = np.where(frame["alcohol"] > 13, "north", "south")  # text: a categorical column
    frame.loc[:4, "hue"] = np.nan  # gaps: imputed
    frame.to_csv(wine, index=False)
    made = init(wine, tmp_path / "wine.yaml")
    config = load_sweep(made.path)
    assert (config.data.dataset, config.data.label, config.data.categorical) == ("table", "target", ("region",))
    assert config.data.missing == "impute" and "Missing values in 'hue' (5 rows)" in made.notes[2]
    assert config.task == "classification" and config.model.family == "dense"
    assert config.study.name == "wine"
    notes = "\n".join(made.notes)
    assert "Label: 'target' (its name)" in notes
    assert re.search(r"3 classes \(examples each, before the validation split\): barbera \d+, barolo \d+, "
                     r"grignolino \d+", notes)
    rows = len(frame) * 0.8 * 0.8  # the test part, then validation, kept apart
    assert all(size < rows / 10 for size in batch_choices(config))
    assert config.search_space["hidden_layers"].high <= 2
    assert "warning" not in notes
    assert str(made.path) in str(made) and f"sweep run {made.path}" in str(made)


def test_the_last_column_is_the_label_unless_label_names_another(diabetes, tmp_path):
    made = init(diabetes, tmp_path / "a.yaml")
    config = load_sweep(made.path)
    assert (config.data.label, config.task, config.study.metric) == ("progression", "regression", "val_rmse")
    assert "the last column; --label NAME picks another" in made.notes[1]
    assert "loss" in config.search_space and "label_smoothing" not in config.search_space

    by_sex = load_sweep(init(diabetes, tmp_path / "b.yaml", label="sex").path)
    assert (by_sex.data.label, by_sex.task) == ("sex", "classification")

    with pytest.raises(BadInputError, match=r"--label weight: .* no such column; its columns are 'age', 'sex'"):
        init(diabetes, tmp_path / "c.yaml", label="weight")
    with pytest.raises(BadInputError, match=r"--label y: names a table's column; .*x.npz is not a table"):
        init(tmp_path / "x.npz", tmp_path / "d.yaml", label="y")


def test_a_picture_folder_gets_a_dense_sweep_with_the_way_to_a_cnn(digit_folder, tmp_path):
    made = init(digit_folder, tmp_path / "digits.yaml")
    config = load_sweep(made.path)
    assert (config.data.dataset, config.model.family, config.data.image_size) == ("images", "dense", None)
    notes = "\n".join(made.notes)
    assert "8 x 8 of uint8 (grayscale pictures)" in notes
    assert "10 classes" in notes and "digit0 20" in notes
    assert "family: cnn" in made.text  # the comment saying how to switch
    assert all(size < 180 / 10 for size in batch_choices(config))  # 250 - 50 test - 20 validation


def test_colour_pictures_of_several_sizes_get_a_cnn_and_one_size(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for index in range(15):
            size = (50, 70) if index % 3 else (40, 60)  # (height, width)
            pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "pets" / label / f"{index}.png")
    made = init(tmp_path / "pets", tmp_path / "pets.yaml")
    config = load_sweep(made.path)
    assert config.model.family == "cnn"
    assert config.data.image_size == (46, 64)  # the most common size, 70 wide, shrunk to 64
    assert "2 different sizes, most often 50x70 (height x width)" in "\n".join(made.notes)


def test_an_npz_of_pictures_and_one_of_measurements(digits, tmp_path):
    images, labels = digits
    np.savez(tmp_path / "digits.npz", x_train=images[::2], y_train=labels[::2], x_test=images[1::2],
             y_test=labels[1::2])
    config = load_sweep(init(tmp_path / "digits.npz", tmp_path / "digits.yaml").path)
    assert (config.data.dataset, config.task, config.model.family) == ("npz", "classification", "dense")

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    y = x @ np.arange(5.0) + rng.normal(size=300) * 0.1
    np.savez(tmp_path / "measured.npz", x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    made = init(tmp_path / "measured.npz", tmp_path / "measured.yaml")
    config = load_sweep(made.path)
    assert (config.task, config.model.family) == ("regression", "dense")
    assert "vectors of features" in "\n".join(made.notes)


def test_an_idx_folder(data_dir, tmp_path):
    made = init(data_dir, tmp_path / "f.yaml")
    config = load_sweep(made.path)
    assert (config.data.dataset, config.data.data_dir, config.model.family) == ("idx", str(data_dir), "dense")
    assert "28 x 28 of uint8" in made.notes[1] and "10 classes" in made.notes[2] and "0 6000" in made.notes[2]
    assert min(batch_choices(config)) >= 64


def test_imbalanced_and_tiny_classes_are_warned_about_and_a_single_row_class_refused(tmp_path):
    rng = np.random.default_rng(0)
    counts = {"common": 300, "rare": 8}
    frame = pd.DataFrame({"x": rng.normal(size=sum(counts.values())),
                          "kind": [name for name, count in counts.items() for _ in range(count)]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    notes = "\n".join(init(tmp_path / "t.csv", tmp_path / "t.yaml").notes)
    assert "warning: imbalanced classes: 'common' has" in notes
    assert "warning: classes too small to split well: 'rare'" in notes

    pd.concat([frame, pd.DataFrame({"x": [0.0], "kind": ["lonely"]})]).to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(DataError) as refused:
        init(tmp_path / "one.csv", tmp_path / "one.yaml")
    config = DataConfig(dataset="table", data_dir=str(tmp_path / "one.csv"), label="kind", validation_fraction=0.2)
    with pytest.raises(DataError) as by_run:
        load_splits(config, 42)
    assert str(refused.value) == str(by_run.value)


def test_out_and_force(wine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = init(wine.relative_to(tmp_path), None)
    assert made.path.as_posix() == "sweeps/wine.yaml" and made.path.is_file()
    assert load_sweep(made.path).data.data_dir == "wine.csv"  # under the current folder: relative
    assert "relative to the folder `sweep run` is run from" in made.text

    with pytest.raises(BadInputError, match=r"sweeps/wine.yaml: exists; pass --force"):
        init(wine, None)
    made.path.write_text("old: file")
    assert init(wine, None, force=True).path.read_text() == made.text

    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(BadInputError, match=r"notes.txt: a sweep file is named NAME.yaml"):
        init(wine, tmp_path / "notes.txt", force=True)
    assert (tmp_path / "notes.txt").read_text() == "keep me"

    monkeypatch.chdir(tmp_path / "sweeps")
    assert load_sweep(init(wine, tmp_path / "w.yaml").path).data.data_dir == str(wine)  # elsewhere: absolute


def test_unreadable_data_is_refused_as_sweep_run_refuses_it(tmp_path, stores, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.npz").write_text("not an archive")
    pd.DataFrame({"only": [1, 2, 3]}).to_csv(tmp_path / "one_column.csv", index=False)
    for name, config in (("missing.npz", DataConfig(dataset="npz", data_dir="missing.npz")),
                         ("one_column.csv", DataConfig(dataset="table", data_dir="one_column.csv", label="only"))):
        with pytest.raises(DataError) as refused:
            init(tmp_path / name, tmp_path / "x.yaml")
        with pytest.raises(DataError) as by_loader:
            load_splits(config, 42)
        assert str(refused.value) == str(by_loader.value)

    assert cli.main(["init", "notes.npz", "--no-timing"]) == 2
    by_init = capsys.readouterr().err
    (tmp_path / "run.yaml").write_text("study: {name: x}\ndata: {dataset: npz, data_dir: notes.npz}\n")
    assert cli.main(["run", "run.yaml", "--no-progress", "--storage", stores["storage"], "--tracking-uri",
                     stores["tracking_uri"]]) == 2
    assert by_init.strip() == capsys.readouterr().err.strip()
    assert "notes.npz: not a valid .npz file" in by_init
    assert not (tmp_path / "sweeps").exists()


@pytest.mark.parametrize("source", ["digit_folder", "shops"])
def test_the_written_file_runs_a_trial_unchanged(source, request, tmp_path, stores, capsys):
    """A folder of pictures; a Parquet table with a text column (categorical) and its class by name (the
    small tables' longer trials are run by test_tables' sweep on the same keys)."""
    data = request.getfixturevalue(source)
    out = tmp_path / "written.yaml"
    assert cli.main(["init", str(data), "--out", str(out), "--no-timing"]) == 0
    assert f"sweep run {out}" in capsys.readouterr().out
    if source == "shops":
        assert (load_sweep(out).data.label, load_sweep(out).data.categorical) == ("class", ("colour",))
    assert cli.main(["run", str(out), "--n-trials", "1", "--no-progress", "--storage", stores["storage"],
                     "--tracking-uri", stores["tracking_uri"]]) == 0
    study = optuna.load_study(study_name=load_sweep(out).study.name, storage=stores["storage"])
    assert [t.state.name for t in study.trials] == ["COMPLETE"]


def test_the_budget_is_timed_on_this_machine(wine, tmp_path):
    made = init(wine, tmp_path / "timed.yaml", timing=True)
    config = load_sweep(made.path)
    found = re.search(r"one epoch of the default model took ([\d.e-]+) s on this machine \((\d+) training rows\); "
                      r"(\d+) trials of ~(\d+) epochs ≈ (\d+) minutes", made.text)
    assert found, made.text
    assert int(found.group(2)) == 113 and int(found.group(3)) == config.study.n_trials
    assert config.study.timeout >= 60 and config.study.timeout % 60 == 0
    assert "Budget: one epoch" in str(made)


def test_a_study_name_taken_in_the_default_storage_gets_its_own(wine, tmp_path, monkeypatch, capsys):
    """Another dataset under a study's name is refused by `sweep run`: the second file must run unchanged."""
    monkeypatch.chdir(tmp_path)
    pd.read_csv(wine).to_parquet("tab.parquet")
    pd.read_csv(wine).iloc[::-1].to_csv("tab.csv", index=False)  # other rows order: other data
    assert cli.main(["init", "tab.parquet", "--no-timing", "--out", "a.yaml"]) == 0
    assert not (tmp_path / "mlruns").exists()  # init reads the storage only when it is there; it creates none
    first = tmp_path / "a.yaml"
    first.write_text(re.sub(r"(?m)^  epochs: .*$", "  epochs: 2", first.read_text()))  # only b's runs as written
    assert cli.main(["run", "a.yaml", "--n-trials", "1", "--no-progress"]) == 0

    made = init(tmp_path / "tab.csv", tmp_path / "b.yaml")
    assert load_sweep(made.path).study.name == "tab-2"
    said = "study 'tab' exists in mlruns/optuna.journal (other data?): this file's study is 'tab-2'"
    assert said in made.notes and f"#   {said}" in made.text
    capsys.readouterr()
    assert cli.main(["run", "b.yaml", "--n-trials", "1", "--no-progress"]) == 0, capsys.readouterr().err
    storage = optuna_storage("journal:///" + str(tmp_path / "mlruns" / "optuna.journal"))
    assert sorted(optuna.get_all_study_names(storage)) == ["tab", "tab-2"]
    assert init(tmp_path / "tab.csv", None).path.as_posix() == "sweeps/tab-3.yaml"  # the next free; out follows


def test_rows_without_a_label_are_said_to_be_left_out_and_feature_gaps_imputed(wine, tmp_path):
    frame = pd.read_csv(wine)
    frame.loc[:2, "target"] = np.nan
    frame.to_csv(wine, index=False)
    made = init(wine, tmp_path / "a.yaml")
    notes = "\n".join(made.notes)
    assert "Rows without a label: 3 (no 'target'); left out, as `sweep run` leaves them out" in notes
    assert "Missing values" not in notes and "impute" not in notes
    config = load_sweep(made.path)
    assert config.data.missing == "drop"  # refuse would refuse the unlabelled rows; no feature has gaps
    assert len(load_splits(config.data, 42).y_test) + len(load_splits(config.data, 42).y_train) < len(frame)

    frame.loc[10:14, "hue"] = np.nan
    frame.to_csv(wine, index=False)
    made = init(wine, tmp_path / "b.yaml")
    notes = "\n".join(made.notes)
    assert "Rows without a label: 3" in notes and "Missing values in 'hue' (5 rows): data.missing impute" in notes
    assert "'target' (" not in notes.split("Missing values")[1]  # the label's gaps are not said to be imputed
    assert load_sweep(made.path).data.missing == "impute"


def test_one_number_per_example_and_a_quoted_path_to_run(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    y = (x > 0).astype(int)
    np.savez(tmp_path / "one.npz", x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    made = init(tmp_path / "one.npz", tmp_path / "my sweeps" / "one.yaml")
    assert "Inputs: one number per example (float64); split:" in made.notes[1]
    assert f"Run it: sweep run '{tmp_path}/my sweeps/one.yaml'" in str(made)


def test_many_small_classes_get_parts_that_hold_each_and_too_few_are_refused_by_their_count(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000),
                          "label": np.repeat([f"c{i:03}" for i in range(200)], 10)})
    frame.to_csv(tmp_path / "many.csv", index=False)
    made = init(tmp_path / "many.csv", tmp_path / "many.yaml")
    config = load_sweep(made.path)
    assert (config.data.test_fraction, config.data.validation_fraction) == (0.2, 0.19)  # 1.5 x 200 / 1600
    assert ("data.validation_fraction 0.19 (not 0.1): 200 classes in the 1600 examples it divides, and the "
            "validation part must hold each class at least once") in made.text
    splits = load_splits(config.data, config.study.seed)
    assert len(np.unique(splits.y_val)) == 200 and len(np.unique(splits.y_test)) == 200

    frame.iloc[::5].to_csv(tmp_path / "few.csv", index=False)  # 200 classes of 2
    with pytest.raises(DataError, match=r"few\.csv: 200 classes in 400 examples \(the smallest, 'c000', has 2\): "
                                        r"too few to split stratified by class, .* data\.validation_fraction can "
                                        r"be at most 0\.45; gather more examples"):
        init(tmp_path / "few.csv", tmp_path / "few.yaml")


@pytest.mark.parametrize("data, out, refused", [
    ("", None, r"data '': an empty path; give the data's path"),
    ("  ", None, r"data '': an empty path"),
    (None, None, r"init_sweep\(data=None\): give the data's path as a str or pathlib.Path"),
    (5, None, r"init_sweep\(data=5\): give the data's path"),
    ("x.csv", 5, r"init_sweep\(out=5\): give the sweep file to write as a str or pathlib.Path"),
])
def test_a_missing_or_mistyped_argument_is_refused_naming_it(data, out, refused, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInputError, match=refused):
        init(data, out)
    assert list(tmp_path.iterdir()) == []
